/// Log levels, most severe first. `log=LEVEL` keeps that level and the more
/// severe ones.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case off = 0, error, warn, info, debug

    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name.lowercased() }) else {
            return nil
        }
        self = level
    }

    public var description: String {
        switch self {
        case .off: "off"
        case .error: "error"
        case .warn: "warn"
        case .info: "info"
        case .debug: "debug"
        }
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Where the engine's log lines go. Lines below the level are never built:
/// the message is an autoclosure, so the hot path pays one comparison.
public struct PortalLogger: Sendable {
    public var level: LogLevel
    /// Receives each line as `LEVEL: message`, without a trailing newline.
    public var sink: @Sendable (String) -> Void

    public init(level: LogLevel, sink: @escaping @Sendable (String) -> Void) {
        self.level = level
        self.sink = sink
    }

    @inline(__always)
    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        if level <= self.level && level != .off { sink("\(level): \(message())") }
    }

    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    public func warn(_ message: @autoclosure () -> String) { log(.warn, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
}
