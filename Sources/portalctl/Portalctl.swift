import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import PortalControl
import PortalEngine

/// `portalctl`: asks a running guest things through the plugin's control
/// socket (`-plugin libportal.so,control=PATH`).
@main
struct Portalctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portalctl",
        abstract: "Query and change a running guest through the portal's control socket.",
        discussion: """
            Start the emulator with -plugin libportal.so,control=PATH and name the same PATH here.
            Every command prints a human-readable form, or the server's JSON with --json. On any
            error portalctl prints one line saying why and exits with status 1.
            """,
        subcommands: [Info.self, Stats.self, Processes.self, ProcessTree.self, Maps.self, Descriptors.self,
                      Environment.self, Cat.self, Pull.self, Push.self, Exec.self, Read.self, ReadString.self,
                      Write.self, Disassemble.self, Watch.self, MCPCommand.self])

    /// Accepts `portalctl --socket PATH SUBCOMMAND ...` as well as
    /// `portalctl SUBCOMMAND --socket PATH ...`: the socket option belongs to
    /// each subcommand, so a leading one is moved behind the subcommand's
    /// name (before any `--` of `exec`).
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.count >= 3, arguments[0] == "--socket" {
            let path = arguments[1]
            arguments = [arguments[2], "--socket", path] + arguments[3...]
        } else if let first = arguments.first, first.hasPrefix("--socket=") {
            arguments = Array(arguments.dropFirst())
            if !arguments.isEmpty { arguments.insert(first, at: 1) }
        }
        await main(arguments)
    }
}

/// The options every subcommand takes.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "The control socket (the plugin's control=PATH).")
    var socket: String

    @Flag(name: .long, help: "Print the server's JSON instead of text.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for the guest's interrupt conversation.")
    var timeout: Double?

    /// Connects, runs `body`, and turns any failure into one line and exit status 1.
    func run(_ body: (QMPConnection) throws -> Void) throws {
        do {
            try body(try QMPConnection(path: socket))
        } catch let error as ClientError {
            fail(error.message)
        }
    }

    /// Runs one command and prints its reply: the server's JSON with --json,
    /// otherwise as `text` renders it. Without `guest` arguments the command
    /// goes with none; with them (even none) it is a guest command and
    /// carries the timeout when given.
    func query(_ command: String, guest arguments: [(String, JSONValue)]? = nil,
               text: (JSONValue) throws -> Void) throws {
        try run { connection in
            let reply = try connection.execute(command, arguments.map(guestArguments) ?? [])
            if json { print(reply.serialized); return }
            try text(reply)
        }
    }

    /// Arguments for guest commands: `timeout` when given.
    func guestArguments(_ arguments: [(String, JSONValue)]) -> [(String, JSONValue)] {
        guard let timeout else { return arguments }
        return arguments + [("timeout", .double(timeout))]
    }
}

/// Prints `reason` as one line on standard error and exits with status 1.
func fail(_ reason: String) -> Never {
    var line = "portalctl: \(reason)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(1)
}

/// A guest address or length: decimal, or hexadecimal with 0x.
struct Number: ExpressibleByArgument {
    let value: UInt64

    init?(argument: String) {
        let lower = argument.lowercased()
        if lower.hasPrefix("0x") {
            guard let parsed = UInt64(lower.dropFirst(2), radix: 16) else { return nil }
            value = parsed
        } else {
            guard let parsed = UInt64(argument) else { return nil }
            value = parsed
        }
    }
}

/// The bytes of a guest-memory-read reply.
func memoryBytes(_ reply: JSONValue) throws -> [UInt8] {
    guard let bytes = reply["hex"]?.stringValue.flatMap({ PortalControl.bytes(fromHex: $0) }) else {
        throw ClientError(message: "the reply carries no bytes: \(reply.serialized)")
    }
    return bytes
}

extension Portalctl {
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The plugin, the guest's layout and what is live now.")
        @OptionGroup var options: ConnectionOptions

        func run() throws {
            try options.query("query-portal") { portal in
                let arch = portal["arch"]?.stringValue ?? "unknown architecture"
                let vcpus = portal["vcpus"]?.intValue ?? 0
                let pending = portal["pending-interrupts"]?.arrayValue?.compactMap(\.stringValue) ?? []
                print("plugin      portal \(portal["version"]?.stringValue ?? "?") in \(portal["emulator"]?.stringValue ?? "?")")
                print("guest       \(arch), \(portal["word-bits"]?.intValue ?? 0)-bit \(portal["byte-order"]?.stringValue ?? "?")-endian, \(vcpus) vCPU\(vcpus == 1 ? "" : "s")")
                print("region      \(portal["region-size"]?.intValue ?? 0) payload bytes")
                print("ops         \(portal["ops"]?.arrayValue?.count ?? 0) (MAX \(portal["op-max"]?.intValue ?? 0))")
                print("live        \(portal["live-conversations"]?.intValue ?? 0) conversations")
                print("interrupts  \(pending.isEmpty ? "none pending" : pending.joined(separator: ", "))")
                print("requests    \(portal["waiting-requests"]?.intValue ?? 0) waiting for the guest")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Round trips, conversations and latency so far.")
        @OptionGroup var options: ConnectionOptions

        func run() throws {
            try options.query("query-stats", text: printStats)
        }
    }

    struct Read: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read guest memory and print it as a hex dump.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "Guest virtual address (0x... or decimal).") var address: Number
        @Argument(help: "Number of bytes.") var length: Number

        func run() throws {
            try options.query("guest-memory-read", guest: [
                ("address", .uint64(address.value)), ("size", .uint64(length.value))]) { reply in
                for line in hexDump(try memoryBytes(reply), at: address.value) { print(line) }
            }
        }
    }

    struct ReadString: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "str", abstract: "Read the NUL-terminated string at an address.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "Guest virtual address.") var address: Number
        @Option(name: .long, help: "Stop after this many bytes.") var maxLength: Int?

        func run() throws {
            var arguments: [(String, JSONValue)] = [("address", .uint64(address.value))]
            if let maxLength { arguments.append(("max-length", .int(Int64(maxLength)))) }
            try options.query("guest-memory-read-string", guest: arguments) { reply in
                print(reply["string"]?.stringValue ?? "")
            }
        }
    }

    struct Write: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write bytes (given as hex) into guest memory.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "Guest virtual address.") var address: Number
        @Argument(help: ArgumentHelp("The bytes as hex digits, e.g. 2a000000.", valueName: "hex")) var bytes: String

        func run() throws {
            try options.query("guest-memory-write", guest: [
                ("address", .uint64(address.value)), ("hex", .string(bytes))]) { reply in
                print("wrote \(reply["size"]?.intValue ?? 0) bytes at \(hex(address.value))")
            }
        }
    }

    struct Disassemble: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dis", abstract: "Disassemble guest memory with Capstone in the guest's architecture.")
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "Guest virtual address.") var address: Number
        @Argument(help: "Number of bytes to decode.") var length: Number
        @Flag(name: .long, help: "arm guests: decode Thumb-2 instead of A32.") var thumb = false

        func run() throws {
            try options.run { connection in
                let portal = try connection.execute("query-portal")
                let architecture = portal["arch"]?.stringValue ?? "an unknown architecture"
                let disassembler = try Disassembler(architecture: architecture, thumb: thumb)
                let reply = try connection.execute("guest-memory-read", options.guestArguments([
                    ("address", .uint64(address.value)), ("size", .uint64(length.value))]))
                let code = try memoryBytes(reply)
                let instructions = disassembler.disassemble(code, at: address.value)
                if options.json {
                    print(JSONValue.array(instructions.map { instruction in
                        .object([("address", .uint64(instruction.address)),
                                 ("bytes", .string(hexDigits(of: instruction.bytes))),
                                 ("mnemonic", .string(instruction.mnemonic)),
                                 ("operands", .string(instruction.operands))])
                    }).serialized)
                    return
                }
                for instruction in instructions {
                    let bytes = instruction.bytes.map { hexDigits(of: [$0]) }.joined(separator: " ")
                    let padded = bytes + String(repeating: " ", count: max(0, 24 - bytes.count))
                    let text = instruction.operands.isEmpty ? instruction.mnemonic
                        : "\(instruction.mnemonic) \(instruction.operands)"
                    print("\(hex(instruction.address))  \(padded)  \(text)")
                }
                let decodedBytes = instructions.reduce(0) { $0 + $1.bytes.count }
                if decodedBytes < code.count {
                    print("\(hex(address.value + UInt64(decodedBytes)))  (\(code.count - decodedBytes) bytes that are no instruction)")
                }
            }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the control socket's events as they happen (all of them, one name, or a guest syscall).",
            discussion: """
                `watch execve` (or another syscall the guest module hooks: openat, sethostname) asks for
                watch-syscall and prints each PORTAL_SYSCALL event of that syscall: pid, name, the
                execve's file name, and the arguments.
                """)
        @OptionGroup var options: ConnectionOptions
        @Argument(help: "An event name (PORTAL_HYPERCALL, PORTAL_SYSCALL), 'all', or a lower-case syscall name (execve).")
        var event: String
        @Option(name: .long, help: "Exit after this many events.") var count: Int?
        @Option(name: .long, help: "First ask for PORTAL_HYPERCALL events of this hypercall number (watch-hypercall).")
        var hypercall: Number?

        func run() throws {
            try options.run { connection in
                if let hypercall {
                    _ = try connection.execute("watch-hypercall", [("hypercall", .uint64(hypercall.value))])
                }
                // A lower-case name is a syscall: its events are PORTAL_SYSCALL ones with that name.
                let syscall = event.first.map { $0.isLowercase } == true && event != "all" ? event : nil
                if let syscall {
                    _ = try connection.execute("watch-syscall", [("name", .string(syscall))])
                }
                print("watching \(event) events")
                fflush(nil)   // a script may wait for this line before making the guest act
                var seen = 0
                while count.map({ seen < $0 }) ?? true {
                    let message = try connection.nextEvent()
                    guard let name = message["event"]?.stringValue else { continue }
                    if let syscall {
                        guard name == "PORTAL_SYSCALL", message["data"]?["name"]?.stringValue == syscall else { continue }
                    } else if event != "all" && !name.caseInsensitiveCompare(event) {
                        continue
                    }
                    seen += 1
                    if options.json {
                        print(message.serialized)
                    } else if syscall != nil, let data = message["data"] {
                        let arguments = (data["args"]?.arrayValue ?? []).map { hex($0.uint64Value ?? 0) }
                        var line = "pid \(number(data["pid"])) \(data["name"]?.stringValue ?? "")"
                        if let filename = data["filename"]?.stringValue { line += " \(filename)" }
                        print(line + " args " + arguments.joined(separator: " "))
                    } else {
                        let seconds = message["timestamp"]?["seconds"]?.intValue ?? 0
                        let micros = message["timestamp"]?["microseconds"]?.intValue ?? 0
                        let fraction = String(micros)
                        print("\(seconds).\(String(repeating: "0", count: max(0, 6 - fraction.count)))\(fraction) \(name) \(message["data"]?.serialized ?? "{}")")
                    }
                    fflush(nil)   // every stream: each event shows as it comes
                }
            }
        }
    }
}

extension String {
    /// ASCII case-insensitive equality (event names are ASCII).
    func caseInsensitiveCompare(_ other: String) -> Bool {
        lowercasedASCII == other.lowercasedASCII
    }

    private var lowercasedASCII: [UInt8] {
        utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
    }
}

/// 16 bytes a line: address, hex, printable ASCII.
func hexDump(_ bytes: [UInt8], at address: UInt64) -> [String] {
    stride(from: 0, to: bytes.count, by: 16).map { offset in
        let row = bytes[offset..<min(offset + 16, bytes.count)]
        let lineAddress = String(address &+ UInt64(offset), radix: 16)
        let hexPart = row.map { hexDigits(of: [$0]) }.joined(separator: " ")
        let padded = hexPart + String(repeating: " ", count: 47 - hexPart.count)
        let text = String(decoding: row.map { (0x20..<0x7f).contains($0) ? $0 : UInt8(ascii: ".") }, as: UTF8.self)
        return "0x" + String(repeating: "0", count: max(0, 8 - lineAddress.count)) + lineAddress + "  " + padded + "  |" + text + "|"
    }
}

/// `portalctl stats` as text: whatever `query-stats` holds, one member a line.
func printStats(_ stats: JSONValue) {
    guard let members = stats.objectMembers, !members.isEmpty else {
        print("no statistics")
        return
    }
    for (name, value) in members {
        if let inner = value.objectMembers {
            print("\(name):")
            for (key, item) in inner { print("  \(key.padding(24)) \(item.serialized)") }
        } else {
            print("\(name.padding(26)) \(value.serialized)")
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
}
