#if canImport(Glibc)
import Glibc
#endif
import PortalEngine

/// Where log lines go: standard error, or the file named by `log_file=`.
/// Each line is one write(2) on an O_APPEND descriptor, so lines from several
/// vCPU threads (or processes sharing the file) never interleave.
final class LogSink: Sendable {
    private let descriptor: Int32
    private let ownsDescriptor: Bool

    static let standardError = LogSink(descriptor: 2, ownsDescriptor: false)

    private init(descriptor: Int32, ownsDescriptor: Bool) {
        self.descriptor = descriptor
        self.ownsDescriptor = ownsDescriptor
    }

    /// Opens `path` for appending, creating it if needed.
    static func appending(to path: String) -> Result<LogSink, ArgumentError> {
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            return .failure(ArgumentError(argument: "log_file=\(path)", message: "cannot open it: \(reason)"))
        }
        return .success(LogSink(descriptor: descriptor, ownsDescriptor: true))
    }

    deinit { if ownsDescriptor { close(descriptor) } }

    func write(_ line: String) {
        var text = "portal: \(line)\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }

    func logger(level: LogLevel) -> PortalLogger {
        PortalLogger(level: level) { [self] line in write(line) }
    }
}
