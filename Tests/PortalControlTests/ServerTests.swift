#if canImport(Glibc)
import Glibc
#endif
import PortalControl
import PortalEngine
import PortalTestSupport
import Testing

/// The server over a real Unix socket, with a `MockGuest` running the
/// interrupt conversations in the test's own thread.
@Suite(.serialized) struct ServerTests {
    /// The guest side of a server: the engine, its one vCPU and the guest
    /// module, its region registered, its interrupt flag enabled, and its
    /// first page (0 to 0xfff) mapped for the requests to read and write.
    struct GuestSide {
        let engine: PortalEngine
        let vcpu: VCPU
        let module: MockGuest

        init(engine: PortalEngine) {
            self.engine = engine
            vcpu = engine.makeVCPU(index: 0)
            module = MockGuest()
            module.registerRegion(engine, vcpu: vcpu)
            module.enableInterrupts(engine, vcpu: vcpu, flag: 0x7000)
            module.map(0, count: MockGuest.pageSize)
        }

        /// One PORTAL_INTERRUPT conversation, run to its end.
        /// - Returns: the commands the guest served in it.
        func interruptConversation() -> [String] {
            module.served(during: {
                _ = module.portal(engine, vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue,
                                  module.flagAddress)
            })
        }

        /// One trap of a conversation with no work attached, which ends at
        /// once: the engine writes the interrupt flag at any trap, and the
        /// guest looks at the flag only before its own conversations.
        func trap() {
            var loop = PortalLoop(vcpu: vcpu, number: 0x7777, arg1: 0, arg2: 0, region: module.freshRegion())
            while loop.trap(engine, guest: module) {}
        }
    }

    static func makeServer(_ name: String, lines: Lock<[String]>? = nil) throws -> (ControlServer, GuestSide) {
        let logger = PortalLogger(level: .debug) { line in lines?.withLock { $0.append(line) } }
        let engine = PortalEngine(configuration: PortalConfiguration(), layout: .little64, logger: logger)
        let path = "/tmp/portal-control-test-\(getpid())-\(name).sock"
        let server = ControlServer(path: path, engine: engine, version: (0, 1, 0, "portal test"), logger: logger) {
            StandardCommands.make(engine: engine, info: PortalInfo(version: "0.1.0", emulator: "test",
                                                                   architecture: "x86_64", vcpus: 1),
                                  recorder: nil, requests: $0)
        }
        try server.start()
        return (server, GuestSide(engine: engine))
    }

    /// Waits (up to 5 s) for the flag: the server queued an interrupt.
    static func waitForFlag(_ guest: GuestSide) {
        for _ in 0..<5000 {
            guest.trap()
            if guest.module.flagValue == 1, guest.engine.pendingInterrupts == [GuestRequestQueue.interruptName] { return }
            usleep(1000)
        }
    }

    @Test func greetingNegotiationAndImmediateCommands() throws {
        let (server, _) = try Self.makeServer("greeting")
        defer { server.stop() }
        let client = try TestClient(path: server.path)
        #expect(try client.line() == #"{"QMP":{"version":{"qemu":{"micro":0,"minor":1,"major":0},"package":"portal test"},"capabilities":[]}}"#)
        client.send(#"{"execute":"query-commands","id":1}"#)
        #expect(try client.line() == #"{"error":{"class":"CommandNotFound","desc":"Expecting capabilities negotiation with 'qmp_capabilities'"},"id":1}"#)
        client.send(#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"This server supports no QMP capabilities; 'enable' must be empty"}}"#)
        client.send(#"{"execute":"qmp_capabilities"}"#)
        #expect(try client.line() == #"{"return":{}}"#)
        client.send(#"{"execute":"query-commands","id":{"nested":[1,2]}}"#)
        #expect(try client.line() == #"{"return":[{"name":"qmp_capabilities"},{"name":"query-commands"},{"name":"query-portal"},{"name":"query-stats"},{"name":"watch-hypercall"},{"name":"guest-memory-read"},{"name":"guest-memory-read-string"},{"name":"guest-memory-write"},{"name":"guest-get-time"},{"name":"watch-syscall"},{"name":"query-processes"},{"name":"query-process"},{"name":"query-mappings"},{"name":"query-fds"},{"name":"query-cwd"},{"name":"query-argv"},{"name":"query-environment"},{"name":"query-executable"},{"name":"query-symbol"},{"name":"guest-file-open"},{"name":"guest-file-read"},{"name":"guest-file-write"},{"name":"guest-file-close"},{"name":"guest-exec"},{"name":"guest-exec-status"},{"name":"guest-info"}],"id":{"nested":[1,2]}}"#)
        // Two messages in one write, one split across two writes.
        client.send(#"{"execute":"nope","id":1}  {"execute":"query-portal","arguments":{"x":1},"id":2}{"execute":"#)
        #expect(try client.line() == #"{"error":{"class":"CommandNotFound","desc":"The command nope has not been found"},"id":1}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"Parameter 'x' is unexpected"},"id":2}"#)
        client.send(#""guest-memory-write","arguments":{"address":0,"hex":"abc"},"id":3}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"Parameter 'hex' expects an even number of hexadecimal digits (at least 2)"},"id":3}"#)
    }

    @Test func guestRequestsTwoClientsAndADisconnect() throws {
        let (server, guest) = try Self.makeServer("clients")
        defer { server.stop() }
        guest.module.store(Array("hello, guest\0".utf8), at: 0x100)
        let first = try TestClient(path: server.path)
        let second = try TestClient(path: server.path)
        let leaving = try TestClient(path: server.path)
        try first.negotiate()
        try second.negotiate()
        try leaving.negotiate()
        first.send(#"{"execute":"guest-memory-read","arguments":{"address":256,"size":5},"id":"a"}"#)
        second.send(#"{"execute":"guest-memory-read-string","arguments":{"address":256},"id":"b"}"#)
        leaving.send(#"{"execute":"guest-memory-write","arguments":{"address":256,"hex":"58"},"id":"c"}"#)
        Self.waitForFlag(guest)
        while server.waitingRequests < 3 { usleep(1000) }
        close(leaving.fd)   // leaves before the guest runs its request
        usleep(100_000)
        #expect(guest.module.flagValue == 1)
        // The write was never run: a READ and a READ_STR (in the order the
        // two clients' requests arrived), no WRITE.
        #expect(guest.interruptConversation().sorted() == ["READ pid=-1 addr=256 size=5", "READ_STR pid=-1 addr=256 size=3840"])
        #expect(try first.line() == #"{"return":{"address":256,"size":5,"hex":"68656c6c6f"},"id":"a"}"#)
        #expect(try second.line() == #"{"return":{"address":256,"length":12,"string":"hello, guest","hex":"68656c6c6f2c206775657374"},"id":"b"}"#)
        #expect(guest.module.bytes(at: 0x100, count: 1) == [UInt8(ascii: "h")])
        first.send(#"{"execute":"guest-get-time","id":4}"#)
        Self.waitForFlag(guest)
        #expect(guest.interruptConversation() == ["READ_TIME pid=-1 addr=0 size=0"])
        #expect(try first.line() == #"{"return":1001000,"id":4}"#)
    }

    @Test func timeoutAndLateResultDropped() throws {
        let (server, guest) = try Self.makeServer("timeout")
        defer { server.stop() }
        let client = try TestClient(path: server.path)
        try client.negotiate()
        client.send(#"{"execute":"guest-memory-read","arguments":{"address":0,"size":1,"timeout":0.2},"id":1}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"guest-memory-read: the guest has not run its interrupt conversation for 0.2 seconds (the guest module looks at the interrupt flag only on syscalls and on its timer); request dropped"},"id":1}"#)
        // The guest comes round later: the abandoned request is not run, nothing is sent.
        #expect(guest.interruptConversation() == [])
        client.send(#"{"execute":"guest-memory-read","arguments":{"address":0,"size":1},"id":2}"#)
        Self.waitForFlag(guest)
        #expect(guest.interruptConversation() == ["READ pid=-1 addr=0 size=1"])
        #expect(try client.line() == #"{"return":{"address":0,"size":1,"hex":"00"},"id":2}"#)
    }

    @Test func waitingRequestsAreBounded() throws {
        let (server, guest) = try Self.makeServer("bounded")
        defer { server.stop() }
        let client = try TestClient(path: server.path)
        try client.negotiate()
        client.send((0...GuestRequestQueue.limit).map { #"{"execute":"guest-get-time","id":\#($0)}"# }.joined())
        #expect(try client.line() == "{\"error\":{\"class\":\"GenericError\",\"desc\":\"guest-get-time: 1024 requests are already waiting for the guest's interrupt conversation; try again later\"},\"id\":1024}")
        #expect(server.waitingRequests == GuestRequestQueue.limit)
        // One window serves them all, in order: the guest's clock (READ_TIME)
        // advances 1000 ns at each.
        Self.waitForFlag(guest)
        #expect(guest.interruptConversation()
            == Array(repeating: "READ_TIME pid=-1 addr=0 size=0", count: GuestRequestQueue.limit))
        for id in 0..<GuestRequestQueue.limit {
            #expect(try client.line() == #"{"return":\#(1_001_000 + 1000 * id),"id":\#(id)}"#)
        }
        #expect(server.waitingRequests == 0)
    }

    @Test func malformedAndOversizedKeepTheConnection() throws {
        let (server, _) = try Self.makeServer("malformed")
        defer { server.stop() }
        let client = try TestClient(path: server.path)
        try client.negotiate()
        client.send(#"{"execute":"query-portal","id":]} "#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"JSON parse error at byte 31: expected a value"}}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"JSON parse error at byte 0: expected a value"}}"#)
        client.send("\"unterminated \n")
        client.send(#"{"id":1}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"JSON parse error at byte 13: unterminated string"}}"#)
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"QMP input lacks member 'execute'"},"id":1}"#)
        let big = #"{"execute":"query-portal","arguments":{"pad":""# + String(repeating: "}", count: 1 << 20) + #""}}"#
        client.send(big)
        #expect(try client.line() == "{\"error\":{\"class\":\"GenericError\",\"desc\":\"request of \(big.utf8.count) bytes refused: a request may have at most 1048576 bytes\"}}")
        client.send(String(repeating: "[", count: 100) + String(repeating: "]", count: 100))
        #expect(try client.line() == #"{"error":{"class":"GenericError","desc":"JSON parse error at byte 64: nested deeper than 64 levels"}}"#)
        client.send(#"{"execute":"query-commands","id":"still here"}"#)
        #expect(try client.line().hasSuffix(#""id":"still here"}"#))
    }

    @Test func socketRefusalsAndRemoval() throws {
        let plain = "/tmp/portal-control-test-\(getpid())-plain"
        let file = fopen(plain, "w")
        fclose(file)
        defer { unlink(plain) }
        let logger = PortalLogger(level: .off) { _ in }
        let engine = PortalEngine(configuration: PortalConfiguration(), layout: .little64, logger: logger)
        let onPlain = ControlServer(path: plain, engine: engine, version: (0, 1, 0, "t"), logger: logger) { _ in [] }
        #expect(throws: ControlSetupError(message: "'\(plain)' exists and is not a socket; refusing to replace it")) {
            try onPlain.start()
        }
        let (live, _) = try Self.makeServer("live")
        let second = ControlServer(path: live.path, engine: engine, version: (0, 1, 0, "t"), logger: logger) { _ in [] }
        #expect(throws: ControlSetupError(message: "'\(live.path)' is a live socket another process is listening on; refusing to take it over")) {
            try second.start()
        }
        var info = stat()
        #expect(lstat(live.path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        live.stop()
        #expect(access(live.path, F_OK) != 0)
        // A socket nobody listens on (left by a process that died) is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(live.path.utf8)) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(stale)
        let replacing = ControlServer(path: live.path, engine: engine, version: (0, 1, 0, "t"), logger: logger) { _ in [] }
        try replacing.start()
        replacing.stop()
        #expect(access(live.path, F_OK) != 0)
    }
}
