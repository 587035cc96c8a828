/// Log levels, most severe first. `log=LEVEL` keeps that level and the more
/// severe ones.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    /// No lines at all (as a line's level: never printed).
    case off = 0
    /// Something failed: a conversation ended badly, a request was refused.
    case error
    /// Something looks wrong but was handled (the default level).
    case warn
    /// What the plugin did: loads, registrations.
    case info
    /// Every conversation's end.
    case debug

    package init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name.lowercased() }) else {
            return nil
        }
        self = level
    }

    /// The level's name in `log=` (`warn`).
    public var description: String {
        switch self {
        case .off: "off"
        case .error: "error"
        case .warn: "warn"
        case .info: "info"
        case .debug: "debug"
        }
    }

    /// Whether `lhs` is more severe than `rhs`.
    /// - Parameters:
    ///   - lhs: A level.
    ///   - rhs: Another level.
    /// - Returns: Whether `lhs` comes first (off, error, warn, info, debug).
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Where the plugin's log lines go (`log=`, `log_file=`); analysis code
/// logs through ``PortalEngine/logger`` so that its lines go there too.
/// Lines below the level are never built: the message is an autoclosure,
/// so the hot path pays one comparison.
public struct PortalLogger: Sendable {
    package var level: LogLevel
    /// Receives each line as `LEVEL: message`, without a trailing newline.
    package var sink: @Sendable (String) -> Void

    package init(level: LogLevel, sink: @escaping @Sendable (String) -> Void) {
        self.level = level
        self.sink = sink
    }

    /// Logs a line at `level`, if `log=` keeps that level.
    /// - Parameters:
    ///   - level: The line's level.
    ///   - message: The text; built only when the line is printed, and with
    ///     control characters escaped so that it stays one line.
    @inline(__always)
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        if level <= self.level && level != .off { sink("\(level): \(Self.oneLine(message()))") }
    }

    /// Messages quote text the guest or a C plugin chose (a banner, an op
    /// table line, a step's error): control characters are escaped, so
    /// every message stays one line and cannot drive the reader's terminal.
    static func oneLine(_ message: String) -> String {
        guard message.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { return message }
        var line = ""
        for scalar in message.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7f {
                line += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                line.unicodeScalars.append(scalar)
            }
        }
        return line
    }

    /// Writes a line whatever the level, without a level prefix: for what
    /// the user asked for (a module's report at unload).
    /// - Parameter line: The text, control characters escaped.
    public func write(_ line: String) { sink(Self.oneLine(line)) }

    /// Logs an error line.
    /// - Parameter message: The text, built only when the line is printed.
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    /// Logs a warning line.
    /// - Parameter message: The text, built only when the line is printed.
    public func warn(_ message: @autoclosure () -> String) { log(.warn, message()) }
    /// Logs an info line.
    /// - Parameter message: The text, built only when the line is printed.
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    /// Logs a debug line.
    /// - Parameter message: The text, built only when the line is printed.
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
}
