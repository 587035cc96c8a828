#if canImport(Glibc)
import Glibc
#endif
import PortalControl
import PortalEngine

/// A guest small enough for the control plane's tests: a flat little-endian
/// 64-bit memory of 64 KiB at address 0, serving READ, WRITE, READ_STR and
/// READ_TIME, and running an interrupt conversation when asked.
final class TinyGuest: @unchecked Sendable {
    static let size = 0x10000
    static let region: UInt64 = 0x8000
    static let flag: UInt64 = 0x7ff8
    var bytes = [UInt8](repeating: 0, count: TinyGuest.size)
    let engine: PortalEngine
    let vcpu: VCPU

    init(engine: PortalEngine) {
        self.engine = engine
        vcpu = engine.makeVCPU(index: 0)
        _ = trap(Hypercall(number: UInt64(HypercallNumber.registerMemRegion.rawValue), arg1: 4072))
        _ = trap(Hypercall(number: UInt64(HypercallNumber.enablePortalInterrupt.rawValue), arg1: TinyGuest.flag))
    }

    /// Whether [address, address + length) lies inside the memory.
    static func holds(_ address: UInt64, _ length: Int) -> Bool {
        address < UInt64(size) && UInt64(length) <= UInt64(size) - address
    }

    var memory: GuestMemory {
        GuestMemory(context: Unmanaged.passUnretained(self).toOpaque(), read: { context, address, buffer, length in
            let guest = Unmanaged<TinyGuest>.fromOpaque(context!).takeUnretainedValue()
            guard TinyGuest.holds(address, length) else { return false }
            guest.bytes.withUnsafeBytes { buffer!.copyMemory(from: $0.baseAddress! + Int(address), byteCount: length) }
            return true
        }, write: { context, address, buffer, length in
            let guest = Unmanaged<TinyGuest>.fromOpaque(context!).takeUnretainedValue()
            guard TinyGuest.holds(address, length) else { return false }
            guest.bytes.withUnsafeMutableBytes { ($0.baseAddress! + Int(address)).copyMemory(from: buffer!, byteCount: length) }
            return true
        })
    }

    func trap(_ call: Hypercall) -> HypercallOutcome { engine.hypercall(call, vcpu: vcpu, memory: memory) }

    func load64(_ at: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: UInt64.self) } }
    func store64(_ value: UInt64, _ at: Int) { bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: at, as: UInt64.self) } }
    func store32(_ value: UInt32, _ at: Int) { bytes.withUnsafeMutableBytes { $0.storeBytes(of: value, toByteOffset: at, as: UInt32.self) } }

    /// Whether the host has raised the interrupt flag.
    var flagRaised: Bool { load64(Int(TinyGuest.flag)) != 0 }

    /// One PORTAL_INTERRUPT conversation, serving each command until NONE.
    /// - Returns: the commands served (op numbers).
    @discardableResult
    func interruptConversation() -> [UInt32] {
        conversation(HypercallNumber.portalInterrupt.rawValue, arg1: TinyGuest.flag)
    }

    /// One conversation on hypercall `number`, serving each command until
    /// NONE, or until `limit` commands were served (the guest then leaves
    /// the conversation unfinished).
    /// - Parameter regionAddress: its region: `TinyGuest.region`, or another
    ///   page from 0x9000 to 0xf000 for conversations that wait side by side.
    /// - Returns: the commands served (op numbers).
    @discardableResult
    func conversation(_ number: UInt32, arg1: UInt64 = 0, limit: Int = .max,
                      regionAddress: UInt64 = TinyGuest.region) -> [UInt32] {
        let region = Int(regionAddress)
        for offset in 0..<24 { bytes[region + offset] = 0 }
        var served: [UInt32] = []
        var answer: UInt64 = 0
        while served.count < limit {
            _ = trap(Hypercall(number: UInt64(number), arg1: arg1, arg3: regionAddress, arg4: answer))
            let op = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: region, as: UInt32.self) }
            if op == 0 { return served }
            served.append(op)
            let address = Int(truncatingIfNeeded: load64(region + 8))
            let size = Int(truncatingIfNeeded: load64(region + 16))
            let payload = region + 24
            // READ and WRITE reach only [0, 0x7000): the region and the flag lie above.
            let servable = address >= 0 && (0...4072).contains(size) && address <= 0x7000 - size
            var code: UInt32
            switch op {
            case 1:   // READ
                if servable { bytes[payload..<payload + size] = bytes[address..<address + size] }
                code = servable ? 0xf000_0001 : 0xf000_0002
            case 2:   // WRITE
                if servable { bytes[address..<address + size] = bytes[payload..<payload + size] }
                code = servable ? 0xf000_0004 : 0xf000_0005
            case 3:   // READ_STR
                var length = 0
                while address + length < 0x7000, length < size, bytes[address + length] != 0 {
                    bytes[payload + length] = bytes[address + length]
                    length += 1
                }
                bytes[payload + length] = 0
                store64(UInt64(length), region + 16)
                code = 0xf000_0001
            case 17:  // READ_TIME
                store64(123_456_789, region + 16)
                code = 0xf000_0006
            default:
                code = 0xf000_0005
            }
            store32(code, region)
            answer = UInt64(code)
        }
        return served
    }
}

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
