#if canImport(Glibc)
import Glibc
#endif
import PortalEngine
import Synchronization

/// Where log lines go: standard error, or the file named by `log_file=`.
/// Each line is one write(2) on an O_APPEND descriptor, so lines from several
/// vCPU threads (or processes sharing the file) never interleave.
final class LogSink: Sendable {
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    /// The `log_file=` path, for the one line that says writing to it failed.
    private let path: String?
    /// Set once a write has failed: the failure is reported on standard
    /// error once, not per lost line (`log_file=/dev/full` would otherwise
    /// drop every line silently, or say so a million times).
    private let reportedFailure = Atomic<Bool>(false)

    static let standardError = LogSink(descriptor: 2, ownsDescriptor: false, path: nil)

    private init(descriptor: Int32, ownsDescriptor: Bool, path: String?) {
        self.descriptor = descriptor
        self.ownsDescriptor = ownsDescriptor
        self.path = path
    }

    /// Opens `path` for appending, creating it if needed. Only a regular
    /// file or a character device (a terminal, /dev/null) is accepted, and
    /// the open never blocks: a FIFO nobody reads would otherwise stop the
    /// emulator inside `init_plugin` / `qemu_plugin_install` for good.
    static func appending(to path: String) -> Result<LogSink, ArgumentError> {
        func refusal(_ message: String) -> Result<LogSink, ArgumentError> {
            .failure(ArgumentError(argument: "log_file=\(path)", message: message))
        }
        var status = stat()
        if stat(path, &status) == 0, let reason = unusableKind(status.st_mode) { return refusal(reason) }
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard descriptor >= 0 else {
            return refusal("cannot open it: \(String(cString: strerror(errno)))")
        }
        // The path may have been replaced between stat and open.
        guard fstat(descriptor, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            return refusal("cannot open it: \(reason)")
        }
        if let reason = unusableKind(status.st_mode) {
            close(descriptor)
            return refusal(reason)
        }
        // Writes to a terminal may block as they always did.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        return .success(LogSink(descriptor: descriptor, ownsDescriptor: true, path: path))
    }

    /// Why a file of this kind cannot take log lines; nil when it can.
    private static func unusableKind(_ mode: mode_t) -> String? {
        let kind = mode & S_IFMT
        if kind == S_IFREG || kind == S_IFCHR { return nil }
        return "it is \(PortalConfiguration.fileKind(mode)), expected a regular file or a character device"
    }

    deinit { if ownsDescriptor { close(descriptor) } }

    func write(_ line: String) {
        var text = "portal: \(line)\n"
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 {
                    reportFailure(written < 0 ? String(cString: strerror(errno)) : "nothing was written")
                    return
                }
                offset += written
            }
        }
    }

    /// Says once, on standard error, that lines are being lost.
    private func reportFailure(_ reason: String) {
        guard let path, !reportedFailure.exchange(true, ordering: .relaxed) else { return }
        LogSink.standardError.write("error: log_file=\(path): cannot write log lines (\(reason)); this and later lines are lost")
    }

    func logger(level: LogLevel) -> PortalLogger {
        PortalLogger(level: level) { [self] line in write(line) }
    }
}
