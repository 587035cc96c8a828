import PortalEngine
import PortalOperations

/// The typed guest operations (PortalOperations) as QMP commands: processes,
/// mappings, files, programs and symbols. Each one checks its arguments on
/// the control thread and runs one typed operation in the guest's next
/// interrupt conversation; a refusal by the guest comes back as a
/// `GenericError` naming the command, the op, what it was about (pid, path)
/// and what the guest answered.
///
/// Where the QEMU guest agent has the same command (`guest-file-open`,
/// `-read`, `-write`, `-close`, `guest-exec`, `guest-exec-status`,
/// `guest-info`) the arguments and results have its shapes, so that a
/// client written for the agent needs no changes.
package enum GuestCommands {
    /// The most bytes one `guest-file-read` returns or one `guest-file-write` takes
    /// (the agent's own default read is 4096; its maximum is larger).
    package static let maxFileTransfer = 256 * 1024

    /// The table entries.
    /// - Parameters:
    ///   - files: the open files of `guest-file-open` (shared by every connection, like the agent's).
    ///   - programs: the results of `guest-exec` for `guest-exec-status`.
    ///   - version: the plugin's version text, for `guest-info`.
    ///   - commandNames: the names of every command of the socket, for `guest-info`.
    /// - Returns: the commands, in the order `query-commands` lists them.
    package static func make(files: GuestFileTable, programs: GuestProgramTable, version: String,
                            commandNames: @escaping @Sendable () -> [String]) -> [ControlCommand] {
        [
            ControlCommand("query-processes", summary: "Every process of the guest: pid, ppid, uid, gid, name (OSI_PROC_ALL).") {
                args throws(QMPError) in
                let timeout = try timeoutOnly(args)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .array(try await guest.processes().map(processJSON))
                })
            },
            ControlCommand("query-process", summary: "One process in detail: task, mm, heap, stack, code, times (OSI_PROC).") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    detailsJSON(try await guest.process(pid: pid))
                })
            },
            ControlCommand("query-mappings",
                           summary: "A process's memory mappings, or the one containing ADDRESS (OSI_MAPPINGS).") {
                args throws(QMPError) in
                try args.allowOnly(["pid", "address", "timeout"])
                let pid = try optionalPID(args)
                let address = try args.value("address") == nil ? nil : args.uint64("address")
                let timeout = try args.seconds("timeout", default: StandardCommands.defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    guard let address else { return .array(try await guest.mappings(pid: pid).map(mappingJSON)) }
                    guard let found = try await guest.mapping(containing: address, pid: pid) else {
                        throw QMPError("query-mappings: no mapping of \(pid.map { "pid \($0)" } ?? "the current process") contains \(hex(address))")
                    }
                    return mappingJSON(found)
                })
            },
            ControlCommand("query-fds", summary: "A process's open file descriptors and their paths (READ_FDS).") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .array(try await guest.fileDescriptors(pid: pid).map {
                        .object([("fd", .int(Int64($0.number))), ("path", .string($0.path))])
                    })
                })
            },
            ControlCommand("query-cwd", summary: "A process's working directory.") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .object([("path", .string(try await guest.workingDirectory(pid: pid)))])
                })
            },
            // Another task's arguments come from READ_PROCARGS, which turns the
            // NULs between them into spaces (the guest module's reply; its
            // /proc/PID/cmdline cannot be read through READ_FILE either: the
            // kernel copies it to a user buffer). The current task's are whole.
            ControlCommand("query-argv",
                           summary: "A process's arguments (READ_PROCARGS: for another task, split at spaces).") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .array(try await guest.arguments(pid: pid).map { .string($0) })
                })
            },
            ControlCommand("query-environment", summary: "A process's environment as name/value pairs (READ_PROCENV).") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .array(try await guest.environment(pid: pid).map {
                        .object([("name", .string($0.name)), ("value", .string($0.value))])
                    })
                })
            },
            ControlCommand("query-executable", summary: "The path of a process's executable (OSI_PROC_EXE).") {
                args throws(QMPError) in
                let (pid, timeout) = try pidAndTimeout(args, required: false)
                return .guest(GuestWork(timeout: timeout) { guest in
                    .object([("path", .string(try await guest.executable(pid: pid)))])
                })
            },
            ControlCommand("query-symbol", summary: "The address of a kernel symbol (KALLSYMS_LOOKUP).") {
                args throws(QMPError) in
                try args.allowOnly(["name", "timeout"])
                let name = try args.string("name")
                let timeout = try args.seconds("timeout", default: StandardCommands.defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    let address = try await guest.symbolAddress(name)
                    return .object([("name", .string(name)), ("address", .uint64(address))])
                })
            },
            ControlCommand("guest-file-open", summary: "Open a guest file for guest-file-read/-write: returns a handle (as the guest agent).") {
                args throws(QMPError) in
                try args.allowOnly(["path", "mode"])
                let path = try args.string("path")
                let modeText = try args.value("mode") == nil ? "r" : args.string("mode")
                guard let mode = GuestFileTable.Mode(rawValue: modeText.replacingBinaryFlag) else {
                    throw QMPError("guest-file-open: mode '\(modeText)' is not one of r, w, r+, w+ (b allowed; append modes are not: the guest module writes at an offset and has no file size)")
                }
                guard path.hasPrefix("/") else {
                    throw QMPError("guest-file-open: path '\(path)' is not absolute")
                }
                let handle = try files.open(path: path, mode: mode)
                return .value(.int(handle))
            },
            ControlCommand("guest-file-read", summary: "Read up to COUNT bytes from an open guest file (buf-b64, count, eof).") {
                args throws(QMPError) in
                try args.allowOnly(["handle", "count", "timeout"])
                let handle = try fileHandle(args)
                let count = try args.int("count", in: 1...maxFileTransfer, default: 4096)
                let timeout = try args.seconds("timeout", default: StandardCommands.defaultTimeout)
                let file = try files.file(handle, command: "guest-file-read")
                guard file.mode.reads else {
                    throw QMPError("guest-file-read: handle \(handle) (\(file.path)) was opened for writing only")
                }
                return .guest(GuestWork(timeout: timeout) { guest in
                    let bytes = try await guest.readFile(path: file.path, offset: file.position, count: count)
                    files.advance(handle, by: UInt64(bytes.count))
                    return .object([("count", .int(Int64(bytes.count))), ("buf-b64", .string(base64Encode(bytes))),
                                    ("eof", .bool(bytes.count < count))])
                })
            },
            ControlCommand("guest-file-write", summary: "Write base64 BUF-B64 (COUNT bytes of it) to an open guest file.") {
                args throws(QMPError) in
                try args.allowOnly(["handle", "buf-b64", "count", "timeout"])
                let handle = try fileHandle(args)
                guard let decoded = base64Decode(try args.string("buf-b64")) else {
                    throw QMPError("guest-file-write: parameter 'buf-b64' is not valid base64")
                }
                let count = try args.int("count", in: 0...decoded.count, default: decoded.count)
                guard count <= maxFileTransfer else {
                    throw QMPError("guest-file-write: \(count) bytes; at most \(maxFileTransfer) may be written at once")
                }
                let timeout = try args.seconds("timeout", default: StandardCommands.defaultTimeout)
                let file = try files.file(handle, command: "guest-file-write")
                guard file.mode.writes else {
                    throw QMPError("guest-file-write: handle \(handle) (\(file.path)) was opened for reading only")
                }
                let bytes = Array(decoded.prefix(count))
                // Position and truncation are taken now, in arrival order, so
                // writes a client sends without waiting land one after the other.
                let (position, truncate) = files.reserveWrite(handle, count: UInt64(bytes.count))
                return .guest(GuestWork(timeout: timeout) { guest in
                    if truncate {
                        // fopen's "w": WRITE_FILE never truncates, so the
                        // old contents go (by the guest's shell) before the first write.
                        let status = try await guest.execute(
                            path: "/bin/sh", arguments: ["/bin/sh", "-c", ": > '\(file.path.shellQuotedBody)'"])
                        guard status == 0 else {
                            throw QMPError("guest-file-write: the guest's /bin/sh could not truncate \(file.path) (wait status \(status))")
                        }
                    }
                    if !bytes.isEmpty {
                        try await guest.writeFile(path: file.path, bytes: bytes, offset: position)
                    }
                    return .object([("count", .int(Int64(bytes.count))), ("eof", .bool(false))])
                })
            },
            ControlCommand("guest-file-close", summary: "Forget a handle of guest-file-open.") {
                args throws(QMPError) in
                try args.allowOnly(["handle"])
                let handle = try fileHandle(args)
                try files.close(handle)
                return .value(.object([]))
            },
            ControlCommand("guest-exec",
                           summary: "Run PATH with ARG and ENV in the guest and wait for it (capture-output: through /bin/sh).") {
                args throws(QMPError) in
                try args.allowOnly(["path", "arg", "env", "capture-output", "timeout"])
                let path = try args.string("path")
                let arguments = try stringList(args, "arg")
                let environment = try stringList(args, "env")
                let capture = try args.bool("capture-output", default: false)
                guard path.hasPrefix("/") else { throw QMPError("guest-exec: path '\(path)' is not absolute") }
                let timeout = try args.seconds("timeout", default: StandardCommands.defaultTimeout)
                return .guest(GuestWork(timeout: timeout) { guest in
                    let result: CommandResult
                    if capture {
                        let line = ([path] + arguments).map { "'\($0.shellQuotedBody)'" }.joined(separator: " ")
                        let prefix = environment.map { "'\($0.shellQuotedBody)'" }.joined(separator: " ")
                        result = try await guest.run(shellCommand: environment.isEmpty ? line : "env \(prefix) \(line)")
                    } else {
                        let status = try await guest.execute(path: path, arguments: [path] + arguments,
                                                             environment: environment, wait: true)
                        result = CommandResult(waitStatus: status, output: [])
                    }
                    return .object([("pid", .int(programs.record(result, captured: capture)))])
                })
            },
            ControlCommand("guest-exec-status", summary: "The result of a guest-exec: exited, exitcode or signal, out-data.") {
                args throws(QMPError) in
                try args.allowOnly(["pid"])
                guard let id = args.value("pid")?.intValue else {
                    throw args.value("pid") == nil ? QMPError("Parameter 'pid' is missing")
                        : QMPError("Invalid parameter type for 'pid', expected: int")
                }
                guard let status = programs.take(Int64(id)) else {
                    throw QMPError("guest-exec-status: no guest-exec has pid \(id) (each status is returned once)")
                }
                return .value(status)
            },
            ControlCommand("guest-info", summary: "The agent-style description: version and supported commands.") {
                args throws(QMPError) in
                try args.allowOnly([])
                return .value(.object([
                    ("version", .string(version)),
                    ("supported_commands", .array(commandNames().map {
                        .object([("name", .string($0)), ("enabled", .bool(true)), ("success-response", .bool(true))])
                    })),
                ]))
            },
        ]
    }

    static func timeoutOnly(_ args: CommandArguments) throws(QMPError) -> Double {
        try args.allowOnly(["timeout"])
        return try args.seconds("timeout", default: StandardCommands.defaultTimeout)
    }

    static func optionalPID(_ args: CommandArguments) throws(QMPError) -> UInt32? {
        guard args.value("pid") != nil else { return nil }
        return UInt32(try args.int("pid", in: 0...Int(Int32.max)))
    }

    static func pidAndTimeout(_ args: CommandArguments, required: Bool) throws(QMPError) -> (UInt32?, Double) {
        try args.allowOnly(["pid", "timeout"])
        let pid = try optionalPID(args)
        if required && pid == nil { throw QMPError("Parameter 'pid' is missing") }
        return (pid, try args.seconds("timeout", default: StandardCommands.defaultTimeout))
    }

    static func fileHandle(_ args: CommandArguments) throws(QMPError) -> Int64 {
        Int64(try args.int("handle", in: 0...Int(Int32.max)))
    }

    static func stringList(_ args: CommandArguments, _ name: String) throws(QMPError) -> [String] {
        guard let given = args.value(name) else { return [] }
        guard case .array(let items) = given else {
            throw QMPError("Invalid parameter type for '\(name)', expected: array of strings")
        }
        var strings: [String] = []
        for item in items {
            guard let text = item.stringValue else {
                throw QMPError("Invalid parameter type for '\(name)', expected: array of strings")
            }
            strings.append(text)
        }
        return strings
    }

    static func processJSON(_ process: ProcessSummary) -> JSONValue {
        .object([("pid", .uint64(process.pid)), ("ppid", .uint64(process.parentPID)),
                 ("uid", .int(Int64(process.uid))), ("gid", .int(Int64(process.gid))),
                 ("euid", .int(Int64(process.effectiveUID))), ("egid", .int(Int64(process.effectiveGID))),
                 ("create-time", .uint64(process.createTime)), ("name", .string(process.name))])
    }

    static func detailsJSON(_ process: ProcessDetails) -> JSONValue {
        .object([
            ("pid", .uint64(process.pid)), ("ppid", .uint64(process.parentPID)), ("name", .string(process.name)),
            ("uid", .uint64(process.uid)), ("gid", .uint64(process.gid)),
            ("euid", .uint64(process.effectiveUID)), ("egid", .uint64(process.effectiveGID)),
            ("task", .uint64(process.taskStructAddress)), ("pgd", .uint64(process.pageDirectoryAddress)),
            ("create-time", .uint64(process.createTime)), ("start-time", .uint64(process.startTime)),
            ("map-count", .uint64(process.mappingCount)),
            ("heap-start", .uint64(process.heapStart)), ("heap-end", .uint64(process.heapEnd)),
            ("stack-start", .uint64(process.stackStart)),
            ("code-start", .uint64(process.codeStart)), ("code-end", .uint64(process.codeEnd)),
            ("data-start", .uint64(process.dataStart)), ("data-end", .uint64(process.dataEnd)),
            ("arg-start", .uint64(process.argumentsStart)), ("arg-end", .uint64(process.argumentsEnd)),
            ("env-start", .uint64(process.environmentStart)), ("env-end", .uint64(process.environmentEnd)),
            ("mmap-base", .uint64(process.mmapBase)), ("task-size", .uint64(process.taskSize)),
        ])
    }

    /// A mapping as /proc/PID/maps shows it: an anonymous mapping (no
    /// inode, no path) has offset 0 there, whatever its page offset is.
    static func mappingJSON(_ mapping: MemoryMapping) -> JSONValue {
        let fileBacked = mapping.inode != 0 || mapping.name.hasPrefix("/")
        return .object([("start", .uint64(mapping.start)), ("end", .uint64(mapping.end)),
                 ("perms", .string(mapping.permissions)), ("offset", .uint64(fileBacked ? mapping.fileOffset : 0)),
                 ("dev", .string("\(twoHex(mapping.deviceMajor)):\(twoHex(mapping.deviceMinor))")),
                 ("inode", .uint64(mapping.inode)), ("name", .string(mapping.name))])
    }

    static func twoHex(_ value: UInt32) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }

}

/// The open files of `guest-file-open`. The guest has no handle: a handle
/// is a path, a mode and a position kept here, and each read or write is
/// one positioned READ_FILE or WRITE_FILE of that path.
package final class GuestFileTable: Sendable {
    /// fopen's modes, as the guest agent takes them (`b` is ignored),
    /// without the append modes (WRITE_FILE needs an offset, and the guest
    /// module reports no file size).
    package enum Mode: String, Sendable {
        /// `r`: reads from the start.
        case read = "r"
        /// `w`: the file is emptied at the first write, then written from the start.
        case write = "w"
        /// `r+`: reads and writes from the start, nothing emptied.
        case readWrite = "r+"
        /// `w+`: as `w`, and reads too.
        case writeRead = "w+"

        /// Whether guest-file-read is allowed.
        var reads: Bool { self != .write }
        /// Whether guest-file-write is allowed.
        var writes: Bool { self != .read }
    }

    /// One open file.
    struct OpenFile: Sendable {
        let path: String
        let mode: Mode
        var position: UInt64
        /// `w`/`w+`: the file is emptied before the first write.
        var truncatePending: Bool
    }

    /// Files open at once; a client that never closes cannot grow the table without bound.
    package static let limit = 256
    private let table = Lock<(next: Int64, files: [Int64: OpenFile])>((1000, [:]))

    /// Creates an empty table.
    package init() {}

    func open(path: String, mode: Mode) throws(QMPError) -> Int64 {
        let handle = table.withLock { state -> Int64? in
            guard state.files.count < Self.limit else { return nil }
            let handle = state.next
            state.next += 1
            state.files[handle] = OpenFile(path: path, mode: mode, position: 0,
                                           truncatePending: mode == .write || mode == .writeRead)
            return handle
        }
        guard let handle else {
            throw QMPError("guest-file-open: \(Self.limit) files are open already; close some with guest-file-close")
        }
        return handle
    }

    func file(_ handle: Int64, command: String) throws(QMPError) -> OpenFile {
        guard let file = table.withLock({ $0.files[handle] }) else {
            throw QMPError("\(command): handle \(handle) is not open")
        }
        return file
    }

    func advance(_ handle: Int64, by count: UInt64) {
        table.withLock { $0.files[handle]?.position &+= count }
    }

    /// Takes the position of a write of `count` bytes and moves past it;
    /// says whether the file is to be emptied first (the first write of `w`).
    func reserveWrite(_ handle: Int64, count: UInt64) -> (position: UInt64, truncate: Bool) {
        table.withLock { state in
            guard var file = state.files[handle] else { return (0, false) }
            let taken = (file.position, file.truncatePending)
            file.position &+= count
            file.truncatePending = false
            state.files[handle] = file
            return taken
        }
    }

    func close(_ handle: Int64) throws(QMPError) {
        guard table.withLock({ $0.files.removeValue(forKey: handle) }) != nil else {
            throw QMPError("guest-file-close: handle \(handle) is not open")
        }
    }
}

/// The results of `guest-exec`, kept until `guest-exec-status` takes them.
/// The guest module's EXEC waits for the program, so a status is complete
/// when it is recorded; its `pid` is a number of this table, not the guest's.
package final class GuestProgramTable: Sendable {
    /// Results kept at once; the oldest goes first beyond it.
    package static let limit = 256
    private let table = Lock<(next: Int64, results: [(Int64, JSONValue)])>((1, []))

    /// Creates an empty table.
    package init() {}

    func record(_ result: CommandResult, captured: Bool) -> Int64 {
        var members: [(String, JSONValue)] = [("exited", .bool(true))]
        if let code = result.exitCode {
            members.append(("exitcode", .int(Int64(code))))
        } else {
            members.append(("signal", .int(result.waitStatus & 0x7f)))
        }
        if captured {
            members.append(("out-data", .string(base64Encode(result.output))))
        }
        return table.withLock { state in
            let id = state.next
            state.next += 1
            if state.results.count >= Self.limit { state.results.removeFirst() }
            state.results.append((id, .object(members)))
            return id
        }
    }

    func take(_ id: Int64) -> JSONValue? {
        table.withLock { state in
            guard let index = state.results.firstIndex(where: { $0.0 == id }) else { return nil }
            return state.results.remove(at: index).1
        }
    }
}

extension String {
    /// The mode without fopen's `b` flag.
    fileprivate var replacingBinaryFlag: String { String(filter { $0 != "b" }) }

    /// The text to put between single quotes for /bin/sh: each `'` becomes `'\''`.
    var shellQuotedBody: String {
        var quoted = ""
        for character in self {
            if character == "'" { quoted += "'\\''" } else { quoted.append(character) }
        }
        return quoted
    }
}

private let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

/// Standard base64 (RFC 4648, with padding), as the guest agent's `buf-b64`.
/// - Parameter bytes: the bytes.
/// - Returns: the text.
package func base64Encode(_ bytes: [UInt8]) -> String {
    var text: [UInt8] = []
    text.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
        let count = min(3, bytes.count - index)
        let b0 = UInt32(bytes[index])
        let b1 = count > 1 ? UInt32(bytes[index + 1]) : 0
        let b2 = count > 2 ? UInt32(bytes[index + 2]) : 0
        let group = b0 << 16 | b1 << 8 | b2
        text.append(base64Alphabet[Int(group >> 18 & 63)])
        text.append(base64Alphabet[Int(group >> 12 & 63)])
        text.append(count > 1 ? base64Alphabet[Int(group >> 6 & 63)] : UInt8(ascii: "="))
        text.append(count > 2 ? base64Alphabet[Int(group & 63)] : UInt8(ascii: "="))
        index += 3
    }
    return String(decoding: text, as: UTF8.self)
}

/// Decodes standard base64 (padding optional, no whitespace).
/// - Parameter text: the base64 text.
/// - Returns: the bytes, or nil if the text is not base64.
package func base64Decode(_ text: String) -> [UInt8]? {
    var values: [UInt8] = []
    var padding = 0
    for character in text.utf8 {
        if character == UInt8(ascii: "=") {
            padding += 1
            continue
        }
        guard padding == 0, let value = base64Alphabet.firstIndex(of: character) else { return nil }
        values.append(UInt8(value))
    }
    guard padding <= 2, values.count % 4 != 1, padding == 0 || (values.count + padding) % 4 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(values.count * 3 / 4)
    var index = 0
    while index < values.count {
        let chunk = values[index..<min(index + 4, values.count)]
        var group: UInt32 = 0
        for (offset, value) in chunk.enumerated() { group |= UInt32(value) << (18 - 6 * offset) }
        bytes.append(UInt8(group >> 16 & 0xff))
        if chunk.count > 2 { bytes.append(UInt8(group >> 8 & 0xff)) }
        if chunk.count > 3 { bytes.append(UInt8(group & 0xff)) }
        index += 4
    }
    return bytes
}
