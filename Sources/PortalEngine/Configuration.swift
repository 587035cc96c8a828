#if canImport(Glibc)
import Glibc
#endif

/// The plugin's settings, parsed from its `key=value` arguments. The same
/// arguments work under every emulator front end.
package struct PortalConfiguration: Sendable, Equatable {
    package var logLevel: LogLevel = .warn
    /// Log lines are appended to this file instead of standard error.
    package var logFile: String? = nil
    /// Region payload size used until the guest registers its own.
    package var regionSize: Int = 4072
    /// Installs interrupt work may make per interrupt window (Python host: 32).
    package var installBudget: Int = 32
    package var ops: OpTable = .standard
    /// Conversations that may wait for the guest at once; more are refused.
    package var maxConversations: Int = 4096
    /// Distinct interrupt names that may be pending at once.
    package var maxInterrupts: Int = 1024
    /// A waiting conversation is taken as abandoned once this many others
    /// have started waiting since the guest last trapped on it.
    package var staleAfter: Int = 1_000_000
    /// Analysis modules to load (`load=PATH`, each followed by its `module_arg=`
    /// items), in the order given.
    package var modules: [AnalysisModuleRequest] = []
    /// Path of the control socket (QMP) to listen on, if any.
    package var controlPath: String? = nil
    /// File that gets one JSON line per round trip and per conversation start and end.
    package var tracePath: String? = nil
    /// Whether a Swift handler's memory reads and writes (`Guest.readBytes`,
    /// `read`, `readCString`, `write`, ...) try the emulator's own view of
    /// the trapping vCPU's virtual memory before a portal round trip
    /// (`direct_memory=on|off`, default on). Only front ends that offer such
    /// a view (QEMU) use it; see `Guest` for the fallback rule.
    package var directMemory: Bool = true

    package init() {}

    /// The largest region payload the engine accepts, from the guest or an
    /// argument: well above any page size a guest kernel uses, low enough that
    /// a hostile guest cannot make the host allocate without bound.
    package static let maxRegionSize = 1 << 20

    /// The argument names, for the message that lists them.
    package static let argumentNames = [
        "log", "log_file", "region_size", "install_budget", "ops", "max_conversations",
        "max_interrupts", "stale_after", "load", "module_arg", "control", "trace", "direct_memory",
    ]

    /// Arguments that may be given more than once: each `load=` names one
    /// more module and each `module_arg=` adds to the module before it.
    static let repeatable: Set<String> = ["load", "module_arg"]

    /// Parses plugin arguments. `readFile` loads the op table named by `ops=`.
    package static func parse(
        _ arguments: [String], readFile: (String) throws -> String
    ) throws(ArgumentError) -> PortalConfiguration {
        var configuration = PortalConfiguration()
        var seen: Set<String> = []
        for argument in arguments {
            guard let equals = argument.firstIndex(of: "=") else {
                throw ArgumentError(argument: argument, message: "expected key=value")
            }
            let key = String(argument[..<equals])
            let value = String(argument[argument.index(after: equals)...])
            guard argumentNames.contains(key) else {
                throw ArgumentError(argument: argument, message:
                    "unknown argument '\(key)'; known: \(argumentNames.joined(separator: ", "))")
            }
            guard repeatable.contains(key) || seen.insert(key).inserted else {
                throw ArgumentError(argument: argument, message: "'\(key)' is given twice")
            }
            func integer(_ range: ClosedRange<Int>) throws(ArgumentError) -> Int {
                guard let number = parseInteger(value), range.contains(number) else {
                    throw ArgumentError(argument: argument, message:
                        "expected a whole number from \(range.lowerBound) to \(range.upperBound)")
                }
                return number
            }
            /// The value, which names a file and so may not be empty.
            func path(_ expected: String) throws(ArgumentError) -> String {
                guard !value.isEmpty else { throw ArgumentError(argument: argument, message: "expected \(expected)") }
                return value
            }
            switch key {
            case "log":
                guard let level = LogLevel(name: value) else {
                    throw ArgumentError(argument: argument, message:
                        "expected one of \(LogLevel.allCases.map(\.description).joined(separator: ", "))")
                }
                configuration.logLevel = level
            case "log_file":
                configuration.logFile = try path("a file path")
            case "region_size":
                configuration.regionSize = try integer(1...maxRegionSize)
            case "install_budget":
                configuration.installBudget = try integer(1...1_000_000)
            case "max_conversations":
                configuration.maxConversations = try integer(1...1_000_000)
            case "max_interrupts":
                configuration.maxInterrupts = try integer(1...1_000_000)
            case "stale_after":
                configuration.staleAfter = try integer(1...1_000_000_000)
            case "load":
                configuration.modules.append(AnalysisModuleRequest(path: try path("the path of an analysis module")))
            case "module_arg":
                guard !configuration.modules.isEmpty else {
                    throw ArgumentError(argument: argument, message:
                        "an analysis module's argument must follow the load=PATH it belongs to")
                }
                configuration.modules[configuration.modules.count - 1].arguments.append(value)
            case "control":
                configuration.controlPath = try path("the path of the control socket")
            case "trace":
                configuration.tracePath = try path("the path of the trace file")
            case "direct_memory":
                switch value {
                case "on": configuration.directMemory = true
                case "off": configuration.directMemory = false
                default: throw ArgumentError(argument: argument, message: "expected on or off")
                }
            case "ops":
                let text: String
                do {
                    text = try readFile(value)
                } catch {
                    throw ArgumentError(argument: argument, message: "cannot read the op table: \(error)")
                }
                do {
                    configuration.ops = try OpTable(parsing: text)
                } catch {
                    throw ArgumentError(argument: argument, message: "bad op table: \(error)")
                }
            default:
                preconditionFailure("argumentNames and the switch disagree on '\(key)'")
            }
        }
        return configuration
    }
}

/// One `load=PATH` argument: an analysis module to load and the `module_arg=`
/// items that followed it.
package struct AnalysisModuleRequest: Sendable, Equatable {
    /// The module's path, as given (`dlopen` resolves a name without a slash
    /// through the library search path).
    package var path: String
    /// The module's `module_arg=` items, in order.
    package var arguments: [String] = []

    /// A module to load with no arguments yet.
    /// - Parameters:
    ///   - path: the module's file, as given to `load=`.
    ///   - arguments: its `module_arg=` items, in order.
    package init(path: String, arguments: [String] = []) {
        self.path = path
        self.arguments = arguments
    }

    /// What the module's `portal_analysis_init` receives: its `module_arg=` items
    /// joined with commas (QEMU split them at the commas), "" for none.
    package var argumentText: String { arguments.joined(separator: ",") }
}

extension PortalConfiguration {
    /// Reads a file named by an argument (the op table).
    ///
    /// Only a regular file is read: the file is opened without blocking and
    /// checked before any byte is read, so a FIFO with no writer cannot hang
    /// the emulator's start-up, and a device such as /dev/zero is refused
    /// rather than read until `limit`.
    /// - Parameters:
    ///   - path: the path as the argument gives it.
    ///   - limit: the most bytes accepted (`ops=` takes at most 1 MiB).
    /// - Returns: the file's contents, decoded as UTF-8 (invalid bytes replaced).
    /// - Throws: `FileError` with strerror's text, "it is a FIFO, expected a
    ///   regular file" (and so on for other kinds), or "longer than N bytes".
    package static func readTextFile(_ path: String, limit: Int = 1 << 20) throws(FileError) -> String {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw FileError(String(cString: strerror(errno))) }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw FileError("it is \(fileKind(status.st_mode)), expected a regular file")
        }
        guard status.st_size <= limit else { throw FileError("longer than \(limit) bytes") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(String(cString: strerror(errno)))
            }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[..<count])
            // The file may grow while it is read.
            guard bytes.count <= limit else { throw FileError("longer than \(limit) bytes") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// What kind of file `mode` (a stat `st_mode`) describes, with its
    /// article, for messages that refuse it: "a FIFO", "a directory", ...
    /// - Parameter mode: `st_mode` from stat(2).
    /// - Returns: the kind in words.
    package static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "a file of unknown kind"
        }
    }
}

/// Why a file named by an argument could not be read (strerror's text).
package struct FileError: Error, Equatable, CustomStringConvertible {
    package var description: String

    package init(_ description: String) { self.description = description }
}

/// A plugin argument that was refused, with the argument as given.
package struct ArgumentError: Error, Equatable, Sendable, CustomStringConvertible {
    package var argument: String
    package var message: String

    package init(argument: String, message: String) {
        self.argument = argument
        self.message = message
    }

    package var description: String { "argument '\(argument)': \(message)" }
}

/// Decimal, or hexadecimal with 0x.
func parseInteger(_ text: String) -> Int? {
    let lower = text.lowercased()
    if lower.hasPrefix("0x") { return Int(lower.dropFirst(2), radix: 16) }
    return Int(text)
}
