#if canImport(Glibc)
import Glibc
#endif
import PortalControl

/// What went wrong talking to the control socket, as one line.
struct ClientError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// A blocking QMP client on a Unix socket: greeting, negotiation, commands
/// and events, one message per `{...}` as the server frames them.
final class QMPConnection {
    private let fd: Int32
    private var framer = QMPFramer()
    private var pending: [JSONValue] = []
    /// Events that arrived while waiting for a reply.
    private var events: [JSONValue] = []
    private var nextID = 1

    /// Connects to `path`, reads the greeting and negotiates capabilities.
    /// - Parameter path: the control socket (`control=PATH`).
    /// - Throws: `ClientError` if the socket cannot be reached or does not speak QMP.
    init(path: String) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ClientError(message: "'\(path)' cannot name a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(message: "cannot create a socket: \(String(cString: strerror(errno)))") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ClientError(message: "cannot connect to \(path): \(reason)")
        }
        let greeting = try receive()
        guard greeting["QMP"] != nil else {
            throw ClientError(message: "\(path) did not greet as a QMP server")
        }
        _ = try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    /// Runs a command and returns its `return` value.
    /// - Parameters:
    ///   - name: the command.
    ///   - arguments: its arguments.
    /// - Returns: the `return` member of the reply.
    /// - Throws: `ClientError` with the server's `desc` for an error reply.
    func execute(_ name: String, _ arguments: [(String, JSONValue)] = []) throws -> JSONValue {
        let id = JSONValue.int(Int64(nextID))
        nextID += 1
        var request: [(String, JSONValue)] = [("execute", .string(name))]
        if !arguments.isEmpty { request.append(("arguments", .object(arguments))) }
        request.append(("id", id))
        try send(JSONValue.object(request).serialized)
        while true {
            let message = try receive()
            if message["event"] != nil {
                events.append(message)
                continue
            }
            guard message["id"] == id else { continue }
            if let error = message["error"] {
                throw ClientError(message: error["desc"]?.stringValue ?? error.serialized)
            }
            guard let value = message["return"] else {
                throw ClientError(message: "the reply to \(name) has neither return nor error: \(message.serialized)")
            }
            return value
        }
    }

    /// The next asynchronous event, waiting for it as long as it takes.
    /// - Returns: the event message (`event`, `data`, `timestamp`).
    /// - Throws: `ClientError` if the connection ends.
    func nextEvent() throws -> JSONValue {
        if !events.isEmpty { return events.removeFirst() }
        while true {
            let message = try receive()
            if message["event"] != nil { return message }
        }
    }

    private func send(_ text: String) throws {
        var bytes = Array(text.utf8)
        bytes.append(0x0a)
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else {
                throw ClientError(message: "the control socket closed: \(String(cString: strerror(errno)))")
            }
            offset += count
        }
    }

    private func receive() throws -> JSONValue {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while pending.isEmpty {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw ClientError(message: "the control socket closed the connection") }
            for frame in framer.feed(buffer[..<count]) {
                guard case .message(let bytes) = frame else {
                    throw ClientError(message: "the server sent a message over \(QMPFramer.defaultLimit) bytes")
                }
                do {
                    pending.append(try JSONValue.parse(bytes))
                } catch {
                    throw ClientError(message: "the server sent invalid JSON: \(error)")
                }
            }
        }
        return pending.removeFirst()
    }
}
