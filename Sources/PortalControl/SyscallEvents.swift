import PortalEngine

/// The guest's syscall-enter events (hypercall 0x1338, PROTOCOL.md §6) as
/// `PORTAL_SYSCALL` QMP events: `watch-syscall` names the syscalls to
/// announce (`execve`, `openat`, ...), and each event the guest raises for
/// one of them is decoded from its `struct syscall_event` and sent to every
/// client, with the execve's file name read from `args[0]` in the calling
/// task's context.
///
/// It observes 0x1338 (`PortalEngine.observe`) while at least one syscall
/// is watched, and only then: with nothing watched, a syscall-enter event
/// costs no conversation of its own (no task, no work). An observer runs
/// first in the conversation and takes nothing from the work attached to
/// 0x1338 (an analysis module's): that work still runs in the same
/// conversation and still decides the hypercall's result.
package final class SyscallWatch: Sendable {
    /// The syscall-enter event's hypercall number.
    package static let enterHypercall = HypercallNumber(rawValue: 0x1338)

    private let engine: PortalEngine
    private let recorder: ControlRecorder
    /// The syscalls watched; the observer is registered exactly while it is not empty.
    private let names = Lock<Set<String>>([])

    /// Creates the watch; nothing is observed until something is watched.
    /// - Parameters:
    ///   - engine: the engine whose 0x1338 conversations are decoded.
    ///   - recorder: where events go (its ``ControlRecorder/announce(_:_:)``).
    package init(engine: PortalEngine, recorder: ControlRecorder) {
        self.engine = engine
        self.recorder = recorder
    }

    deinit {
        engine.stopObserving(Self.enterHypercall, as: Self.observerName)
    }

    /// The name the watch observes 0x1338 under.
    private static let observerName = "watch-syscall"

    /// Starts or stops announcing syscall `name`: the first name watched
    /// registers the observer, the last one unwatched removes it.
    /// - Parameters:
    ///   - name: the syscall's name as the guest module writes it (`execve`).
    ///   - enabled: whether to announce it.
    /// - Returns: every name watched now, sorted.
    package func watch(_ name: String, enabled: Bool) -> [String] {
        names.withLock { names in
            let wasEmpty = names.isEmpty
            if enabled { names.insert(name) } else { names.remove(name) }
            // Under the lock, so that two clients' changes reach the engine
            // in the order they changed the set.
            if wasEmpty && !names.isEmpty {
                // The observer holds the names and the recorder, not this
                // watch: the engine keeps its observers and the watch keeps
                // the engine, so capturing the watch would keep both forever.
                let (watched, recorder) = (self.names, self.recorder)
                do {
                    try engine.observe(Self.enterHypercall, as: Self.observerName) { guest in
                        try await Self.announce(guest, watching: watched, to: recorder)
                        return 0
                    }
                } catch {
                    // 0x1338 is not one of the protocol's own numbers: not reached.
                    engine.logger.error("watch-syscall: \(error)")
                }
            } else if !wasEmpty && names.isEmpty {
                engine.stopObserving(Self.enterHypercall, as: Self.observerName)
            }
            return names.sorted()
        }
    }

    /// Reads the event, and announces it to `recorder` if its syscall is in `names`.
    nonisolated(nonsending) private static func announce(
        _ guest: Guest, watching names: Lock<Set<String>>, to recorder: ControlRecorder
    ) async throws {
        // A conversation that started before the last name was unwatched.
        guard !names.withLock({ $0.isEmpty }) else { return }
        let layout = guest.layout
        let address = guest.call.arg1 & layout.addressMask
        let bytes = try await guest.readBytes(at: address, count: SyscallEvent.size(wordBits: layout.wordBits))
        guard let event = SyscallEvent(bytes, layout: layout),
              names.withLock({ $0.contains(event.name) }) else { return }
        var members: [(String, JSONValue)] = [
            ("name", .string(event.name)), ("pid", .uint64(event.pid)), ("vcpu", .int(Int64(guest.call.vcpu))),
            ("pc", .uint64(event.pc)), ("argc", .int(Int64(event.argc))),
            ("args", .array(event.arguments.map { .uint64($0) })),
        ]
        if event.name == "execve" || event.name == "execveat" {
            let pathArgument = event.name == "execve" ? event.arguments[0] : event.arguments[1]
            if let path = try? await guest.readCString(at: pathArgument & layout.addressMask, maxLength: 4096) {
                members.append(("filename", .string(String(decoding: path, as: UTF8.self))))
            }
        }
        recorder.announce("PORTAL_SYSCALL", .object(members))
    }
}

/// `struct syscall_event` (PROTOCOL.md §6): 160 bytes on 64-bit guests, 144 on 32-bit.
struct SyscallEvent: Equatable {
    var arguments: [UInt64]
    var pc: UInt64
    var pid: UInt64
    var argc: UInt32
    var name: String

    /// Makes an event from its fields (tests compare with it).
    init(arguments: [UInt64], pc: UInt64, pid: UInt64, argc: UInt32, name: String) {
        self.arguments = arguments
        self.pc = pc
        self.pid = pid
        self.argc = argc
        self.name = name
    }

    /// The struct's size in a guest of `wordBits`.
    static func size(wordBits: Int) -> Int { wordBits == 64 ? 160 : 144 }

    /// Decodes the struct; nil if `bytes` is shorter than it. The name ends
    /// at its first NUL or after its 48 bytes, whatever the guest wrote.
    init?(_ bytes: [UInt8], layout: GuestLayout) {
        let wide = layout.wordBits == 64
        guard bytes.count >= Self.size(wordBits: layout.wordBits) else { return nil }
        func field(_ offset: Int, _ width: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in 0..<width {
                let byte = UInt64(bytes[offset + (layout.byteOrder == .little ? width - 1 - index : index)])
                value = value << 8 | byte
            }
            return value
        }
        arguments = (0..<6).map { field($0 * 8, 8) }
        pc = field(48, wide ? 8 : 4)
        pid = field(wide ? 88 : 72, 8)
        argc = UInt32(field(wide ? 104 : 88, 4))
        let nameStart = wide ? 109 : 93
        let raw = bytes[nameStart..<nameStart + 48]
        name = String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
