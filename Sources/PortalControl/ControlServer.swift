#if canImport(Glibc)
import Glibc
#endif
import PortalEngine
import Synchronization

/// Why the control socket or the trace file could not be set up; the text
/// names the path and the reason.
package struct ControlSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    /// One line saying what is wrong.
    package let message: String

    /// Creates an error.
    /// - Parameter message: one line naming the path and the reason.
    package init(message: String) { self.message = message }

    package var description: String { message }
}

/// Monotonic time in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// A QMP server on a Unix socket: the greeting, capability negotiation,
/// `execute` with `id`, `return` / `error`, asynchronous events, for any
/// number of clients at once.
///
/// One thread owns every connection and waits in poll(2); nothing a client
/// sends reaches a vCPU thread except a guest request, which the vCPU
/// answers through a locked list and a wake-up pipe. Commands that need the
/// guest run as interrupt work (`GuestRequestQueue`); the client waits
/// while other clients are served.
package final class ControlServer: @unchecked Sendable {
    /// The socket's path.
    package let path: String
    private let commands: [String: ControlCommand]
    /// Command names in the order `query-commands` lists them.
    private let commandNames: [String]
    private let logger: PortalLogger
    private let greeting: String
    /// A connection's unsent output beyond this drops it (a client that never reads).
    static let outboxLimit = 16 << 20

    private let requests: GuestRequestQueue
    /// Results from vCPU threads and events from anywhere, for the poll thread.
    private let mailbox = Lock<Mailbox>(Mailbox())
    private var listener: Int32 = -1
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private var socketIdentity: (dev: UInt, ino: UInt)?
    private var thread: pthread_t?
    private let stopping = Atomic<Bool>(false)

    // Owned by the poll thread.
    private var connections: [UInt64: Connection] = [:]
    private var nextConnectionID: UInt64 = 1

    private struct Mailbox {
        var results: [(GuestRequest, Result<JSONValue, QMPError>)] = []
        var events: [String] = []
    }

    /// Creates a server; nothing is opened until `start()`.
    /// - Parameters:
    ///   - path: where the socket is created.
    ///   - engine: whose interrupt conversations run guest requests.
    ///   - version: the package text of the greeting and its major/minor/micro numbers.
    ///   - logger: where connection problems are logged.
    ///   - commands: makes the command table (`qmp_capabilities` and
    ///     `query-commands` are built in), given the queue guest requests wait in.
    package init(path: String, engine: PortalEngine, version: (major: Int, minor: Int, micro: Int, package: String),
                logger: PortalLogger, commands makeCommands: (GuestRequestQueue) -> [ControlCommand]) {
        self.path = path
        self.logger = logger
        let requests = GuestRequestQueue(engine: engine)
        self.requests = requests
        let commands = makeCommands(requests)
        var table: [String: ControlCommand] = [:]
        var names = ["qmp_capabilities", "query-commands"]
        for command in commands where table[command.name] == nil {
            table[command.name] = command
            names.append(command.name)
        }
        self.commands = table
        self.commandNames = names
        let versionObject = JSONValue.object([
            ("qemu", .object([("micro", .int(Int64(version.micro))), ("minor", .int(Int64(version.minor))),
                              ("major", .int(Int64(version.major)))])),
            ("package", .string(version.package)),
        ])
        greeting = JSONValue.object([
            ("QMP", .object([("version", versionObject), ("capabilities", .array([]))])),
        ]).serialized
        requests.deliver = { [unowned self] request, result in
            mailbox.withLock { $0.results.append((request, result)) }
            wake()
        }
    }

    /// Guest requests waiting for the guest's next interrupt conversation.
    package var waitingRequests: Int { requests.waitingCount }

    // MARK: Starting and stopping

    /// Creates the socket (mode 0600) and starts serving.
    ///
    /// An existing socket at `path` that nobody listens on (left by a
    /// process that died) is replaced; any other file, or a socket some
    /// process is listening on, is left alone and refused.
    /// - Throws: `ControlSetupError` saying why the socket cannot be used.
    package func start() throws(ControlSetupError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity, !pathBytes.contains(0) else {
            throw ControlSetupError(message: "'\(path)' cannot name a Unix socket: expected 1 to \(capacity - 1) bytes without NUL")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        try refuseExisting(address)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw ControlSetupError(message: "cannot create a socket for '\(path)': \(errorText())") }
        // The file bind creates takes the socket inode's mode (less the
        // umask): 0600 from the start, no window where others may connect.
        fchmod(fd, 0o600)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let reason = errorText()
            close(fd)
            throw ControlSetupError(message: "cannot create the control socket '\(path)': \(reason)")
        }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else {
            let reason = errorText()
            close(fd)
            unlink(path)
            throw ControlSetupError(message: "cannot listen on '\(path)': \(reason)")
        }
        var info = stat()
        if lstat(path, &info) == 0 { socketIdentity = (UInt(info.st_dev), UInt(info.st_ino)) }
        var pipeEnds: [Int32] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            let reason = errorText()
            close(fd)
            unlink(path)
            throw ControlSetupError(message: "cannot create the control thread's wake-up pipe: \(reason)")
        }
        listener = fd
        (wakeRead, wakeWrite) = (pipeEnds[0], pipeEnds[1])
        for end in pipeEnds { makeNonBlocking(end) }

        var created = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&created, nil, { context in
            let server = Unmanaged<ControlServer>.fromOpaque(context!).takeRetainedValue()
            server.run()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<ControlServer>.fromOpaque(context).release()
            closeEverything()
            throw ControlSetupError(message: "cannot start the control thread: \(String(cString: strerror(status)))")
        }
        thread = created
        logger.info("control: listening on \(path)")
    }

    /// Refuses a path that holds anything but a dead socket; removes a dead one.
    private func refuseExisting(_ address: sockaddr_un) throws(ControlSetupError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlSetupError(message: "'\(path)' exists and is not a socket; refusing to replace it")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw ControlSetupError(message: "cannot probe '\(path)': \(errorText())") }
        defer { close(probe) }
        var target = address
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 || errno == EAGAIN {
            throw ControlSetupError(message: "'\(path)' is a live socket another process is listening on; refusing to take it over")
        }
        // Nobody listens: a socket left behind by a process that ended.
        guard unlink(path) == 0 else {
            throw ControlSetupError(message: "cannot remove the stale socket '\(path)': \(errorText())")
        }
    }

    /// Stops serving: every client is disconnected, waiting requests are
    /// dropped, and the socket file is removed (if it is still ours).
    package func stop() {
        guard let thread, !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        wake()
        pthread_join(thread, nil)
        self.thread = nil
        requests.close()
        closeEverything()
    }

    private func closeEverything() {
        for connection in connections.values { dropConnection(connection, reason: nil) }
        if listener >= 0 {
            close(listener)
            listener = -1
            // Another process may have replaced the file since: remove only ours.
            var info = stat()
            if let identity = socketIdentity, lstat(path, &info) == 0,
               UInt(info.st_dev) == identity.dev, UInt(info.st_ino) == identity.ino {
                unlink(path)
            }
        }
        if wakeRead >= 0 { close(wakeRead); wakeRead = -1 }
        if wakeWrite >= 0 { close(wakeWrite); wakeWrite = -1 }
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)   // a full pipe already means "wake up"
    }

    // MARK: Events

    /// Sends an asynchronous event to every negotiated client. Any thread.
    /// - Parameters:
    ///   - name: the event's name (QMP style: `PORTAL_HYPERCALL`).
    ///   - data: its `data` member.
    package func emit(event name: String, data: JSONValue) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let message = JSONValue.object([
            ("event", .string(name)), ("data", data),
            ("timestamp", .object([("seconds", .int(Int64(now.tv_sec))),
                                   ("microseconds", .int(Int64(now.tv_nsec / 1000)))])),
        ]).serialized
        mailbox.withLock { $0.events.append(message) }
        wake()
    }

    // MARK: The poll thread

    private final class Connection {
        let id: UInt64
        let fd: Int32
        var framer = QMPFramer()
        var outbox: [UInt8] = []
        var negotiated = false
        var pending: [GuestRequest] = []

        init(id: UInt64, fd: Int32) {
            self.id = id
            self.fd = fd
        }
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.load(ordering: .acquiring) {
            var descriptors = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let order = Array(connections.values)
            for connection in order {
                let events = Int16(POLLIN) | (connection.outbox.isEmpty ? 0 : Int16(POLLOUT))
                descriptors.append(pollfd(fd: connection.fd, events: events, revents: 0))
            }
            let ready = poll(&descriptors, nfds_t(descriptors.count), pollTimeout())
            if ready < 0 && errno != EINTR {
                logger.error("control: poll failed: \(errorText()); the control socket stops serving")
                return
            }
            if descriptors[1].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 256)
                while read(wakeRead, &drain, drain.count) > 0 {}
            }
            takeMailbox()
            expireRequests()
            for (index, connection) in order.enumerated() {
                let revents = descriptors[index + 2].revents
                guard revents != 0, connections[connection.id] != nil else { continue }
                if revents & Int16(POLLOUT) != 0 { flush(connection) }
                if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { receive(connection, buffer: &buffer) }
            }
            if descriptors[0].revents & Int16(POLLIN) != 0 { acceptClients() }
        }
    }

    /// Milliseconds until the next request's deadline, or -1 (none).
    private func pollTimeout() -> Int32 {
        var earliest = UInt64.max
        for connection in connections.values {
            for request in connection.pending { earliest = min(earliest, request.deadline) }
        }
        guard earliest != .max else { return -1 }
        let now = monotonicNanoseconds()
        guard earliest > now else { return 0 }
        return Int32(min((earliest - now + 999_999) / 1_000_000, 60_000))
    }

    private func acceptClients() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else {
                if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    logger.warn("control: accepting a client failed: \(errorText())")
                }
                return
            }
            makeNonBlocking(fd)
            let connection = Connection(id: nextConnectionID, fd: fd)
            nextConnectionID += 1
            connections[connection.id] = connection
            send(greeting, to: connection)
        }
    }

    private func receive(_ connection: Connection, buffer: inout [UInt8]) {
        while connections[connection.id] != nil {
            let count = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                for frame in connection.framer.feed(buffer[..<count]) {
                    handle(frame, from: connection)
                    if connections[connection.id] == nil { return }
                }
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            // The client closed its end (or the connection broke).
            if let last = connection.framer.finish() { handle(last, from: connection) }
            dropConnection(connection, reason: nil)
            return
        }
    }

    /// Disconnects a client; its requests are abandoned (never run if still
    /// waiting, their results dropped if running).
    private func dropConnection(_ connection: Connection, reason: String?) {
        if let reason { logger.warn("control: client \(connection.id) disconnected: \(reason)") }
        for request in connection.pending { _ = request.abandon() }
        connection.pending.removeAll()
        close(connection.fd)
        connections[connection.id] = nil
    }

    // MARK: Requests

    private func handle(_ frame: QMPFramer.Frame, from connection: Connection) {
        switch frame {
        case .oversized(let length):
            reply(to: connection, id: nil, .failure(QMPError(
                "request of \(length) bytes refused: a request may have at most \(QMPFramer.defaultLimit) bytes")))
        case .message(let bytes):
            let message: JSONValue
            do {
                message = try JSONValue.parse(bytes)
            } catch {
                reply(to: connection, id: nil, .failure(QMPError("\(error)")))
                return
            }
            execute(message, from: connection)
        }
    }

    private func execute(_ message: JSONValue, from connection: Connection) {
        guard let members = message.objectMembers else {
            reply(to: connection, id: nil, .failure(QMPError("QMP input must be a JSON object")))
            return
        }
        let id = message["id"]
        var name: String?
        var arguments: [(String, JSONValue)] = []
        for (key, value) in members {
            switch key {
            case "execute":
                guard let text = value.stringValue else {
                    reply(to: connection, id: id, .failure(QMPError("QMP input member 'execute' must be a string")))
                    return
                }
                name = text
            case "arguments":
                guard let given = value.objectMembers else {
                    reply(to: connection, id: id, .failure(QMPError("QMP input member 'arguments' must be an object")))
                    return
                }
                arguments = given
            case "id":
                break
            default:
                reply(to: connection, id: id, .failure(QMPError("QMP input member '\(key)' is unexpected")))
                return
            }
        }
        guard let name else {
            reply(to: connection, id: id, .failure(QMPError("QMP input lacks member 'execute'")))
            return
        }
        let args = CommandArguments(arguments)
        if name == "qmp_capabilities" {
            if connection.negotiated {
                reply(to: connection, id: id, .failure(QMPError(.commandNotFound,
                    "Capabilities negotiation is already complete, command ignored")))
                return
            }
            do {
                try args.allowOnly(["enable"])
                if let enable = args.value("enable"), enable.arrayValue?.isEmpty != true {
                    throw QMPError("This server supports no QMP capabilities; 'enable' must be empty")
                }
                connection.negotiated = true
                reply(to: connection, id: id, .success(.object([])))
            } catch let error as QMPError {
                reply(to: connection, id: id, .failure(error))
            } catch {
                reply(to: connection, id: id, .failure(QMPError("\(error)")))
            }
            return
        }
        guard connection.negotiated else {
            reply(to: connection, id: id, .failure(QMPError(.commandNotFound,
                "Expecting capabilities negotiation with 'qmp_capabilities'")))
            return
        }
        if name == "query-commands" {
            reply(to: connection, id: id, .success(.array(commandNames.map { .object([("name", .string($0))]) })))
            return
        }
        guard let command = commands[name] else {
            reply(to: connection, id: id, .failure(QMPError(.commandNotFound, "The command \(name) has not been found")))
            return
        }
        let outcome: CommandOutcome
        do {
            outcome = try command.run(args)
        } catch {
            reply(to: connection, id: id, .failure(error))
            return
        }
        switch outcome {
        case .value(let value):
            reply(to: connection, id: id, .success(value))
        case .guest(let work):
            let request = GuestRequest(connectionID: connection.id, requestID: id, command: name, work: work,
                                       now: monotonicNanoseconds())
            if let refusal = requests.submit(request) {
                reply(to: connection, id: id, .failure(QMPError("\(name): \(refusal)")))
                return
            }
            connection.pending.append(request)
        }
    }

    /// Hands finished requests to their clients and broadcasts events.
    private func takeMailbox() {
        let taken = mailbox.withLock { box -> Mailbox in
            let taken = box
            box = Mailbox()
            return taken
        }
        for (request, result) in taken.results {
            guard let connection = connections[request.connectionID],
                  let index = connection.pending.firstIndex(where: { $0 === request }) else { continue }
            connection.pending.remove(at: index)
            reply(to: connection, id: request.requestID, result)
        }
        for event in taken.events {
            for connection in connections.values where connection.negotiated {
                send(event, to: connection)
            }
        }
    }

    /// Fails every request whose deadline has passed.
    private func expireRequests() {
        let now = monotonicNanoseconds()
        for connection in connections.values {
            var kept: [GuestRequest] = []
            for request in connection.pending {
                guard request.deadline <= now else {
                    kept.append(request)
                    continue
                }
                let seconds = Self.secondsText(request.work.timeout)
                switch request.abandon() {
                case .waiting:
                    reply(to: connection, id: request.requestID, .failure(QMPError(
                        "\(request.command): the guest has not run its interrupt conversation for \(seconds) seconds (the guest module looks at the interrupt flag only on syscalls and on its timer); request dropped")))
                case .running:
                    reply(to: connection, id: request.requestID, .failure(QMPError(
                        "\(request.command): the guest started the request but has not finished it in \(seconds) seconds; request dropped")))
                case nil:
                    kept.append(request)   // finished: its result is in the mailbox
                default:
                    break
                }
            }
            connection.pending = kept
        }
    }

    static func secondsText(_ seconds: Double) -> String {
        seconds == seconds.rounded() && seconds < 1e15 ? String(Int64(seconds)) : String(seconds)
    }

    // MARK: Output

    private func reply(to connection: Connection, id: JSONValue?, _ result: Result<JSONValue, QMPError>) {
        var members: [(String, JSONValue)]
        switch result {
        case .success(let value): members = [("return", value)]
        case .failure(let error): members = [("error", error.json)]
        }
        if let id { members.append(("id", id)) }
        send(JSONValue.object(members).serialized, to: connection)
    }

    private func send(_ message: String, to connection: Connection) {
        connection.outbox.append(contentsOf: message.utf8)
        connection.outbox.append(0x0a)   // QEMU ends each message with CRLF; LF is enough for JSON readers
        guard connection.outbox.count <= Self.outboxLimit else {
            dropConnection(connection, reason: "more than \(Self.outboxLimit) bytes unread")
            return
        }
        flush(connection)
    }

    private func flush(_ connection: Connection) {
        var sent = 0
        while sent < connection.outbox.count {
            let count = connection.outbox.withUnsafeBytes {
                Glibc.send(connection.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if count > 0 { sent += count; continue }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            connection.outbox.removeAll()
            dropConnection(connection, reason: nil)   // the client went away
            return
        }
        connection.outbox.removeFirst(sent)
    }
}

/// Non-blocking and closed on exec (Glibc's Swift module lacks pipe2 and accept4).
func makeNonBlocking(_ fd: Int32) {
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
}

/// strerror's text for the current errno.
func errorText() -> String { String(cString: strerror(errno)) }
