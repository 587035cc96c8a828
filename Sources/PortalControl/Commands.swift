import PortalEngine

/// What a command does once its arguments are checked: answer at once, or
/// run work in the guest and answer when the guest has.
package enum CommandOutcome: Sendable {
    /// The `return` value, ready now.
    case value(JSONValue)
    /// Work for the guest's next interrupt conversation; its value is the `return`.
    case guest(GuestWork)
}

/// One entry of the command table: a QMP command name and what it does.
///
/// `run` checks the arguments on the control thread and must not block;
/// anything that needs the guest goes into the `.guest` outcome. Typed
/// guest operations (processes, maps, files, exec) are added as entries of
/// this kind: parse arguments, return `.guest(GuestWork { guest in ... })`.
package struct ControlCommand: Sendable {
    /// The QMP name (`query-portal`, `guest-memory-read`).
    package let name: String
    /// One sentence for `portalctl` and MCP tool listings.
    package let summary: String
    /// Checks the arguments and says what to do.
    package let run: @Sendable (CommandArguments) throws(QMPError) -> CommandOutcome

    /// Creates a command.
    /// - Parameters:
    ///   - name: the QMP name.
    ///   - summary: one sentence saying what it does.
    ///   - run: checks the arguments and returns the outcome.
    package init(_ name: String, summary: String,
                run: @escaping @Sendable (CommandArguments) throws(QMPError) -> CommandOutcome) {
        self.name = name
        self.summary = summary
        self.run = run
    }
}

/// What `query-portal` reports about the emulator side, which the control
/// plane itself does not know.
package struct PortalInfo: Sendable {
    /// The plugin's version text.
    package var version: String
    /// `qemu` or `panda`.
    package var emulator: String
    /// The guest architecture as the emulator names it (`x86_64`), if known.
    package var architecture: String?
    /// vCPUs the plugin serves.
    package var vcpus: Int

    /// Creates the description.
    /// - Parameters:
    ///   - version: the plugin's version text.
    ///   - emulator: the front end's name.
    ///   - architecture: the guest architecture, if the emulator says.
    ///   - vcpus: the number of vCPUs.
    package init(version: String, emulator: String, architecture: String?, vcpus: Int) {
        self.version = version
        self.emulator = emulator
        self.architecture = architecture
        self.vcpus = vcpus
    }
}

/// The commands every control socket has.
package enum StandardCommands {
    /// Seconds a guest request waits for the guest unless its `timeout` says otherwise.
    package static let defaultTimeout = 10.0
    /// The most bytes one memory read or write may move (a reply stays well under the framer's limit in hex).
    package static let maxTransfer = 256 * 1024

    /// The table: `query-portal`, `query-stats`, guest memory, the guest
    /// clock, and the typed guest operations of ``GuestCommands``.
    /// - Parameters:
    ///   - engine: the engine the guest commands run through.
    ///   - info: what the emulator side reports for `query-portal`.
    ///   - recorder: the statistics behind `query-stats` and the hypercall
    ///     events of `watch-hypercall` (nil: empty statistics, no events).
    ///   - requests: the queue guest requests wait in, for `query-portal`.
    /// - Returns: the commands, in the order `query-commands` lists them.
    package static func make(engine: PortalEngine, info: PortalInfo, recorder: ControlRecorder?,
                            requests: GuestRequestQueue) -> [ControlCommand] {
        // guest-info lists every command, itself included: the names are
        // filled in once the table is made.
        let names = Lock<[String]>([])
        let syscalls = recorder.map { SyscallWatch(engine: engine, recorder: $0) }
        let commands = memoryCommands(engine: engine, info: info, recorder: recorder, requests: requests)
            + [watchSyscall(syscalls)]
            + GuestCommands.make(files: GuestFileTable(), programs: GuestProgramTable(), version: info.version,
                                 commandNames: { names.withLock { $0 } })
        names.withLock { $0 = ["qmp_capabilities", "query-commands"] + commands.map(\.name) }
        return commands
    }

    /// `watch-syscall`: announce the guest's syscall-enter events for one
    /// syscall as `PORTAL_SYSCALL` events.
    static func watchSyscall(_ syscalls: SyscallWatch?) -> ControlCommand {
        ControlCommand("watch-syscall",
                       summary: "Announce the guest's syscall-enter events (0x1338) for NAME as PORTAL_SYSCALL events (or stop).") {
            args throws(QMPError) in
            try args.allowOnly(["name", "enable"])
            let name = try args.string("name")
            guard !name.isEmpty, name.utf8.count < 48 else {
                throw QMPError("Parameter 'name' expects a syscall name of 1 to 47 bytes (the guest's syscall_event.name)")
            }
            let enabled = try args.bool("enable", default: true)
            guard let syscalls else { throw QMPError("this plugin keeps no recorder: no events") }
            return .value(.object([("watching", .array(syscalls.watch(name, enabled: enabled).map { .string($0) }))]))
        }
    }

    /// The commands that need no typed operation: the plugin, statistics,
    /// events, guest memory and the guest clock.
    static func memoryCommands(engine: PortalEngine, info: PortalInfo, recorder: ControlRecorder?,
                               requests: GuestRequestQueue) -> [ControlCommand] {
        [
            ControlCommand("query-portal", summary: "The plugin, the guest layout, the op table and what is live now.") {
                args throws(QMPError) in
                try args.allowOnly([])
                return .value(portalDescription(engine: engine, info: info, waitingRequests: requests.waitingCount))
            },
            ControlCommand("query-stats",
                           summary: "Round trips per op and response code, conversations, latency percentiles.") {
                args throws(QMPError) in
                try args.allowOnly([])
                return .value(recorder?.stats.snapshot(ops: engine.configuration.ops) ?? .object([]))
            },
            ControlCommand("watch-hypercall",
                           summary: "Announce each conversation HYPERCALL starts as a PORTAL_HYPERCALL event (or stop).") {
                args throws(QMPError) in
                try args.allowOnly(["hypercall", "enable"])
                let number = try args.uint64("hypercall")
                guard number <= UInt64(UInt32.max) else {
                    throw QMPError("Parameter 'hypercall' expects a number from 0 to 4294967295")
                }
                let enabled = try args.bool("enable", default: true)
                guard let recorder else { throw QMPError("this plugin keeps no recorder: no events") }
                let watched = recorder.watch(UInt32(number), enabled: enabled)
                return .value(.object([("watching", .array(watched.map { .int(Int64($0)) }))]))
            },
            ControlCommand("guest-memory-read",
                           summary: "Read SIZE bytes of guest virtual memory at ADDRESS (in the guest's current task).") {
                args throws(QMPError) in
                try args.allowOnly(["address", "size", "timeout"])
                let address = try args.uint64("address") & engine.layout.addressMask
                let size = try args.int("size", in: 1...maxTransfer)
                let timeout = try args.seconds("timeout", default: defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    let bytes = try await guest.readBytes(at: address, count: size)
                    return .object([("address", .uint64(address)), ("size", .int(Int64(bytes.count))),
                                    ("hex", .string(hexDigits(of: bytes)))])
                })
            },
            ControlCommand("guest-memory-read-string",
                           summary: "Read the NUL-terminated string at ADDRESS (at most MAX-LENGTH bytes).") {
                args throws(QMPError) in
                try args.allowOnly(["address", "max-length", "timeout"])
                let address = try args.uint64("address") & engine.layout.addressMask
                let maxLength = try args.int("max-length", in: 1...maxTransfer, default: 4096)
                let timeout = try args.seconds("timeout", default: defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    let bytes = try await guest.readCString(at: address, maxLength: maxLength)
                    return .object([("address", .uint64(address)), ("length", .int(Int64(bytes.count))),
                                    ("string", .string(String(decoding: bytes, as: UTF8.self))),
                                    ("hex", .string(hexDigits(of: bytes)))])
                })
            },
            ControlCommand("guest-memory-write", summary: "Write the bytes given as HEX to guest virtual memory at ADDRESS.") {
                args throws(QMPError) in
                try args.allowOnly(["address", "hex", "timeout"])
                let address = try args.uint64("address") & engine.layout.addressMask
                let text = try args.string("hex")
                guard let bytes = bytes(fromHex: text), !bytes.isEmpty else {
                    throw QMPError("Parameter 'hex' expects an even number of hexadecimal digits (at least 2)")
                }
                guard bytes.count <= maxTransfer else {
                    throw QMPError("Parameter 'hex' holds \(bytes.count) bytes; at most \(maxTransfer) may be written at once")
                }
                let timeout = try args.seconds("timeout", default: defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    try await guest.write(bytes, at: address)
                    return .object([("address", .uint64(address)), ("size", .int(Int64(bytes.count)))])
                })
            },
            ControlCommand("guest-get-time", summary: "The guest's monotonic clock in nanoseconds (READ_TIME).") {
                args throws(QMPError) in
                try args.allowOnly(["timeout"])
                let timeout = try args.seconds("timeout", default: defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .uint64(try await guest.readTime())
                })
            },
        ]
    }

    /// The `query-portal` object.
    static func portalDescription(engine: PortalEngine, info: PortalInfo, waitingRequests: Int) -> JSONValue {
        let layout = engine.layout
        let ops = engine.configuration.ops
        return .object([
            ("version", .string(info.version)),
            ("emulator", .string(info.emulator)),
            ("arch", info.architecture.map { .string($0) } ?? .null),
            ("word-bits", .int(Int64(layout.wordBits))),
            ("byte-order", .string(layout.byteOrder == .little ? "little" : "big")),
            ("region-size", .int(Int64(engine.regionSize))),
            ("ops", .array(ops.names.enumerated().map { index, name in
                .object([("name", .string(name)), ("number", .int(Int64(index + 1)))])
            })),
            ("op-max", .int(Int64(ops.max))),
            ("vcpus", .int(Int64(info.vcpus))),
            ("live-conversations", .int(Int64(engine.liveConversations))),
            ("pending-interrupts", .array(engine.pendingInterrupts.map { .string($0) })),
            ("waiting-requests", .int(Int64(waitingRequests))),
        ])
    }
}

extension JSONValue {
    /// An unsigned number as JSON: `.int` when it fits, else `.uint`.
    /// - Parameter value: the number.
    /// - Returns: the JSON number.
    package static func uint64(_ value: UInt64) -> JSONValue {
        value <= UInt64(Int64.max) ? .int(Int64(value)) : .uint(value)
    }
}
