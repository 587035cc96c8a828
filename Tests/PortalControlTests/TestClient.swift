#if canImport(Glibc)
import Glibc
#endif

/// A blocking test client: exact bytes out, one parsed message per line in.
final class TestClient {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(path: String) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw ClientFailure(message: "connect: \(String(cString: strerror(errno)))") }
        var wait = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    struct ClientFailure: Error { let message: String }

    func send(_ text: String) {
        var bytes = Array(text.utf8)
        _ = Glibc.send(fd, &bytes, bytes.count, Int32(MSG_NOSIGNAL))
    }

    /// The next line the server sent, as text.
    func line() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = recv(fd, &chunk, chunk.count, 0)
            guard count > 0 else { throw ClientFailure(message: "no reply (\(count))") }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    func negotiate() throws {
        _ = try line()
        send(#"{"execute":"qmp_capabilities"}"#)
        _ = try line()
    }
}
