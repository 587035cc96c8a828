/// Log levels, most severe first. `log=LEVEL` keeps that level and the more
/// severe ones.
package enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case off = 0, error, warn, info, debug

    package init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name.lowercased() }) else {
            return nil
        }
        self = level
    }

    package var description: String {
        switch self {
        case .off: "off"
        case .error: "error"
        case .warn: "warn"
        case .info: "info"
        case .debug: "debug"
        }
    }

    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Where the engine's log lines go. Lines below the level are never built:
/// the message is an autoclosure, so the hot path pays one comparison.
package struct PortalLogger: Sendable {
    package var level: LogLevel
    /// Receives each line as `LEVEL: message`, without a trailing newline.
    package var sink: @Sendable (String) -> Void

    package init(level: LogLevel, sink: @escaping @Sendable (String) -> Void) {
        self.level = level
        self.sink = sink
    }

    @inline(__always)
    package func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
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

    package func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    package func warn(_ message: @autoclosure () -> String) { log(.warn, message()) }
    package func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    package func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
}
