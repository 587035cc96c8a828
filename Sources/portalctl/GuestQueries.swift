import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import PortalControl

/// The typed guest queries: processes, mappings, descriptors, environment,
/// files and programs, each one control command printed as a table (or
/// the server's JSON with `--json`).
extension Portalctl {
    struct Processes: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ps", abstract: "The guest's processes: pid, ppid, uid, name.")
        @OptionGroup var options: ConnectionOptions

        func run() throws {
            try options.query("query-processes", guest: []) { list in
                print("PID".leftPadded(7) + " " + "PPID".leftPadded(7) + " " + "UID".leftPadded(5) + "  NAME")
                for process in list.arrayValue ?? [] {
                    print(number(process["pid"]).leftPadded(7) + " " + number(process["ppid"]).leftPadded(7) + " "
                          + number(process["uid"]).leftPadded(5) + "  " + (process["name"]?.stringValue ?? ""))
                }
            }
        }
    }

    struct ProcessTree: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pstree", abstract: "The guest's processes as a tree of parents and children.")
        @OptionGroup var options: ConnectionOptions

        func run() throws {
            try options.query("query-processes", guest: []) { list in
                let processes = (list.arrayValue ?? []).compactMap { process -> (UInt64, UInt64, String)? in
                    guard let pid = process["pid"]?.uint64Value, let ppid = process["ppid"]?.uint64Value else { return nil }
                    return (pid, ppid, process["name"]?.stringValue ?? "")
                }
                let pids = Set(processes.map(\.0))
                var children: [UInt64: [(UInt64, String)]] = [:]
                for (pid, ppid, name) in processes {
                    // A process whose parent is not listed (pid 1's parent 0) is a root.
                    children[pids.contains(ppid) && ppid != pid ? ppid : 0, default: []].append((pid, name))
                }
                func show(_ parent: UInt64, depth: Int) {
                    for (pid, name) in (children[parent] ?? []).sorted(by: { $0.0 < $1.0 }) {
                        print(String(repeating: "  ", count: depth) + "\(name)(\(pid))")
                        if depth < 64 { show(pid, depth: depth + 1) }
                    }
                }
                show(0, depth: 0)
            }
        }
    }

    struct Maps: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A process's memory mappings, as /proc/PID/maps shows them.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The process id.") var pid: UInt32
        @Option(name: .long, help: "Only the mapping containing this address.") var address: Number?

        func run() throws {
            var arguments: [(String, JSONValue)] = [("pid", .int(Int64(pid)))]
            if let address { arguments.append(("address", .uint64(address.value))) }
            try options.query("query-mappings", guest: arguments) { reply in
                let mappings = address == nil ? reply.arrayValue ?? [] : [reply]
                for mapping in mappings {
                    let start = String(mapping["start"]?.uint64Value ?? 0, radix: 16).leftPadded(8, with: "0")
                    let end = String(mapping["end"]?.uint64Value ?? 0, radix: 16).leftPadded(8, with: "0")
                    let offset = String(mapping["offset"]?.uint64Value ?? 0, radix: 16).leftPadded(8, with: "0")
                    var line = "\(start)-\(end) \(mapping["perms"]?.stringValue ?? "----") \(offset) "
                        + "\(mapping["dev"]?.stringValue ?? "00:00") \(number(mapping["inode"]))"
                    if let name = mapping["name"]?.stringValue, !name.isEmpty { line += " " + name }
                    print(line)
                }
            }
        }
    }

    struct Descriptors: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fds", abstract: "A process's open file descriptors and what they refer to.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The process id.") var pid: UInt32

        func run() throws {
            try options.query("query-fds", guest: [("pid", .int(Int64(pid)))]) { list in
                for entry in list.arrayValue ?? [] {
                    print(number(entry["fd"]).leftPadded(4) + "  " + (entry["path"]?.stringValue ?? ""))
                }
            }
        }
    }

    struct Environment: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "env", abstract: "A process's environment, one NAME=value a line.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The process id.") var pid: UInt32

        func run() throws {
            try options.query("query-environment", guest: [("pid", .int(Int64(pid)))]) { list in
                for entry in list.arrayValue ?? [] {
                    print("\(entry["name"]?.stringValue ?? "")=\(entry["value"]?.stringValue ?? "")")
                }
            }
        }
    }

    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a guest file.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The file's absolute path in the guest.") var path: String

        func run() throws {
            try options.run { connection in
                let bytes = try readGuestFile(connection, path: path, options: options)
                if options.json {
                    print(JSONValue.object([("path", .string(path)), ("count", .int(Int64(bytes.count))),
                                            ("buf-b64", .string(base64Encode(bytes)))]).serialized)
                    return
                }
                writeStandardOutput(bytes)
            }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a guest file to a local file.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The file's absolute path in the guest.") var guest: String
        @Argument(help: "The local file to write.") var local: String

        func run() throws {
            try options.run { connection in
                let bytes = try readGuestFile(connection, path: guest, options: options)
                guard let file = fopen(local, "wb") else {
                    throw ClientError(message: "cannot open \(local) for writing: \(String(cString: strerror(errno)))")
                }
                let written = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
                let closed = fclose(file) == 0
                guard written == bytes.count, closed else {
                    throw ClientError(message: "cannot write \(local): \(String(cString: strerror(errno)))")
                }
                if options.json {
                    print(JSONValue.object([("guest", .string(guest)), ("local", .string(local)),
                                            ("count", .int(Int64(bytes.count)))]).serialized)
                } else {
                    print("copied \(bytes.count) bytes from the guest's \(guest) to \(local)")
                }
            }
        }
    }

    struct Push: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy a local file into the guest (replacing it).")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "The local file to read.") var local: String
        @Argument(help: "The file's absolute path in the guest.") var guest: String

        func run() throws {
            guard let file = fopen(local, "rb") else {
                fail("cannot open \(local): \(String(cString: strerror(errno)))")
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = chunk.withUnsafeMutableBufferPointer { fread($0.baseAddress, 1, $0.count, file) }
                if count == 0 { break }
                bytes += chunk[0..<count]
            }
            fclose(file)
            try options.run { connection in
                let handle = try connection.execute("guest-file-open", [("path", .string(guest)), ("mode", .string("w"))])
                var done = 0
                repeat {
                    let part = Array(bytes[done..<min(done + GuestCommands.maxFileTransfer, bytes.count)])
                    _ = try connection.execute("guest-file-write", options.guestArguments([
                        ("handle", handle), ("buf-b64", .string(base64Encode(part)))]))
                    done += part.count
                } while done < bytes.count
                _ = try connection.execute("guest-file-close", [("handle", handle)])
                if options.json {
                    print(JSONValue.object([("local", .string(local)), ("guest", .string(guest)),
                                            ("count", .int(Int64(bytes.count)))]).serialized)
                } else {
                    print("copied \(bytes.count) bytes from \(local) to the guest's \(guest)")
                }
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a program in the guest, wait for it, print its output and exit with its status.",
            discussion: "portalctl exec -- /bin/ls -l /tmp")
        @OptionGroup var options: ConnectionOptions
        @Flag(name: .long, help: "Do not capture the output (the program runs directly, not through /bin/sh).")
        var noOutput = false
        @Argument(parsing: .captureForPassthrough, help: "The program's absolute path and its arguments.")
        var command: [String]

        func run() throws {
            let words = command.first == "--" ? Array(command.dropFirst()) : command
            guard let path = words.first else { fail("exec: no program given (portalctl exec -- PATH ARGS...)") }
            var status = JSONValue.null
            try options.run { connection in
                let started = try connection.execute("guest-exec", options.guestArguments([
                    ("path", .string(path)), ("arg", .array(words.dropFirst().map { .string($0) })),
                    ("capture-output", .bool(!noOutput))]))
                status = try connection.execute("guest-exec-status", [("pid", started["pid"] ?? .null)])
            }
            if options.json {
                print(status.serialized)
                return
            }
            if let data = status["out-data"]?.stringValue, let output = base64Decode(data) {
                writeStandardOutput(output)
            }
            fflush(nil)
            if let code = status["exitcode"]?.intValue, code != 0 { Glibc.exit(Int32(truncatingIfNeeded: code)) }
            if let signal = status["signal"]?.intValue { fail("exec: \(path) ended by signal \(signal)") }
        }
    }
}

/// A whole guest file through guest-file-open/read/close, 64 KiB a read.
func readGuestFile(_ connection: QMPConnection, path: String, options: ConnectionOptions) throws -> [UInt8] {
    try readGuestFile(connection, path: path, extra: options.guestArguments([]))
}

/// A whole guest file; `extra` arguments (a timeout) go with each read.
func readGuestFile(_ connection: QMPConnection, path: String, extra: [(String, JSONValue)]) throws -> [UInt8] {
    let handle = try connection.execute("guest-file-open", [("path", .string(path)), ("mode", .string("r"))])
    var bytes: [UInt8] = []
    while true {
        let reply = try connection.execute("guest-file-read", [("handle", handle), ("count", .int(65536))] + extra)
        guard let text = reply["buf-b64"]?.stringValue, let part = base64Decode(text) else {
            throw ClientError(message: "guest-file-read: the reply carries no buf-b64: \(reply.serialized)")
        }
        bytes += part
        if reply["eof"] == .bool(true) || part.isEmpty { break }
    }
    _ = try connection.execute("guest-file-close", [("handle", handle)])
    return bytes
}

/// Writes raw bytes (a guest file, a program's output) to standard output,
/// after whatever `print` buffered.
func writeStandardOutput(_ bytes: [UInt8]) {
    fflush(nil)
    var done = 0
    while done < bytes.count {
        let written = bytes[done...].withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count) }
        guard written > 0 else { fail("cannot write to standard output: \(String(cString: strerror(errno)))") }
        done += written
    }
}

/// A JSON number as decimal text ("?" if it is none).
func number(_ value: JSONValue?) -> String {
    if let unsigned = value?.uint64Value { return String(unsigned) }
    if let signed = value?.intValue { return String(signed) }
    return "?"
}

extension String {
    /// Right-aligned in `width` columns.
    func leftPadded(_ width: Int, with fill: Character = " ") -> String {
        String(repeating: String(fill), count: max(0, width - count)) + self
    }
}
