@testable import PortalEngine
import Synchronization

/// A guest kernel module in Swift, as PROTOCOL.md §4–§6 describe it, over a
/// sparse 4 KiB-paged memory with holes. Engine tests drive the engine
/// through it exactly as an emulator would.
final class MockGuest: @unchecked Sendable {
    static let pageSize: UInt64 = 4096

    let layout: GuestLayout
    let ops: OpTable
    /// Payload bytes per region (PAGE_SIZE - 24).
    let regionSize: Int
    /// Addresses at or above are "kernel" addresses (all-or-nothing reads).
    var kernelBase: UInt64
    /// READ_TIME answers this.
    let clock = Atomic<UInt64>(1_000_000)

    private let pages = Lock<[UInt64: [UInt8]]>([:])
    /// Free pages for regions, first in first out, so addresses recur as
    /// with a kernel's page allocator, but never while a conversation uses one.
    private let freeRegions: Lock<[UInt64]>
    private(set) var flagAddress: UInt64 = 0

    /// Lets a test answer a command its own way (e.g. with an invalid code);
    /// returning nil serves it normally.
    var answerOverride: (@Sendable (RegionHeader) -> UInt32?)?
    /// Runs while the guest serves a command (e.g. to start a nested conversation).
    var onServe: (@Sendable (RegionHeader, VCPU) -> Void)?
    /// The emulator's own view of this guest's memory that traps offer the
    /// engine (`directMemory:`), as QEMU's front end does; nil offers none.
    var directView: DirectView?

    init(layout: GuestLayout = .little64, ops: OpTable = .standard, regionSize: Int = 4072,
         regionPages: Int = 64, regionBase: UInt64 = 0x10_0000) {
        self.layout = layout
        self.ops = ops
        self.regionSize = regionSize
        self.kernelBase = layout.wordBits == 64 ? 0xffff_8000_0000_0000 : 0xc000_0000
        let pool = (0..<UInt64(regionPages)).map { regionBase + $0 * 2 * MockGuest.pageSize }
        freeRegions = Lock(pool)
        for page in pool { map(page, count: MockGuest.pageSize * 2) }
    }

    // MARK: Memory

    func map(_ address: UInt64, count: UInt64, fill: UInt8 = 0) {
        pages.withLock { pages in
            var page = address & ~(Self.pageSize - 1)
            while page < address + count {
                if pages[page] == nil { pages[page] = [UInt8](repeating: fill, count: Int(Self.pageSize)) }
                page += Self.pageSize
            }
        }
    }

    func isMapped(_ address: UInt64) -> Bool {
        pages.withLock { $0[address & ~(Self.pageSize - 1)] != nil }
    }

    func unmap(_ address: UInt64) {
        _ = pages.withLock { $0.removeValue(forKey: address & ~(Self.pageSize - 1)) }
    }

    /// Copies as many bytes as are mapped from the start; returns how many.
    @discardableResult
    func copyOut(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        pages.withLock { pages in
            var done = 0
            while done < buffer.count {
                let at = (address &+ UInt64(done)) & layout.addressMask
                let page = at & ~(Self.pageSize - 1)
                guard let bytes = pages[page] else { return done }
                let offset = Int(at - page)
                let chunk = min(buffer.count - done, Int(Self.pageSize) - offset)
                bytes.withUnsafeBytes {
                    (buffer.baseAddress! + done).copyMemory(from: $0.baseAddress! + offset, byteCount: chunk)
                }
                done += chunk
            }
            return done
        }
    }

    @discardableResult
    func copyIn(_ address: UInt64, from buffer: UnsafeRawBufferPointer) -> Int {
        pages.withLock { pages in
            var done = 0
            while done < buffer.count {
                let at = (address &+ UInt64(done)) & layout.addressMask
                let page = at & ~(Self.pageSize - 1)
                guard pages[page] != nil else { return done }
                let offset = Int(at - page)
                let chunk = min(buffer.count - done, Int(Self.pageSize) - offset)
                pages[page]!.withUnsafeMutableBytes {
                    ($0.baseAddress! + offset).copyMemory(from: buffer.baseAddress! + done, byteCount: chunk)
                }
                done += chunk
            }
            return done
        }
    }

    /// This guest's memory as the engine takes it.
    var memory: GuestMemory {
        GuestMemory(context: Unmanaged.passUnretained(self).toOpaque(), read: { context, address, buffer, length in
            let guest = Unmanaged<MockGuest>.fromOpaque(context!).takeUnretainedValue()
            return guest.copyOut(address, into: UnsafeMutableRawBufferPointer(start: buffer, count: length)) == length
        }, write: { context, address, buffer, length in
            let guest = Unmanaged<MockGuest>.fromOpaque(context!).takeUnretainedValue()
            return guest.copyIn(address, from: UnsafeRawBufferPointer(start: buffer, count: length)) == length
        })
    }

    func bytes(at address: UInt64, count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        result.withUnsafeMutableBytes { _ = copyOut(address, into: $0) }
        return result
    }

    func store(_ bytes: [UInt8], at address: UInt64) {
        bytes.withUnsafeBytes { _ = copyIn(address, from: $0) }
    }

    func header(at region: UInt64) -> RegionHeader {
        bytes(at: region, count: RegionHeader.size).withUnsafeBytes {
            RegionHeader(decoding: $0.baseAddress!, layout: layout)
        }
    }

    func setHeader(_ header: RegionHeader, at region: UInt64) {
        var raw = [UInt8](repeating: 0, count: RegionHeader.size)
        raw.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!, layout: layout) }
        store(raw, at: region)
    }

    // MARK: The guest module

    /// Takes the next page of the pool: header zeroed, payload left stale.
    func freshRegion() -> UInt64 {
        let region = freeRegions.withLock { free in
            precondition(!free.isEmpty, "the mock guest ran out of region pages")
            return free.removeFirst()
        }
        store([UInt8](repeating: 0, count: RegionHeader.size), at: region)
        store([UInt8](repeating: 0xa5, count: regionSize), at: region + UInt64(RegionHeader.size))
        return region
    }

    func registerRegion(_ engine: PortalEngine, vcpu: VCPU) {
        _ = engine.hypercall(Hypercall(number: UInt64(HypercallNumber.registerMemRegion.rawValue),
                                       arg1: UInt64(regionSize), vcpu: vcpu.index), vcpu: vcpu, memory: memory)
    }

    func enableInterrupts(_ engine: PortalEngine, vcpu: VCPU, flag: UInt64) {
        map(flag, count: 8)
        flagAddress = flag
        _ = engine.hypercall(Hypercall(number: UInt64(HypercallNumber.enablePortalInterrupt.rawValue),
                                       arg1: flag, vcpu: vcpu.index), vcpu: vcpu, memory: memory)
    }

    var flagValue: UInt64 {
        bytes(at: flagAddress, count: 8).withUnsafeBytes { layout.load(UInt64.self, from: $0.baseAddress!) }
    }

    /// `igloo_portal(num, a1, a2)`: the whole conversation, interrupt check first.
    func portal(_ engine: PortalEngine, vcpu: VCPU, number: UInt32, _ arg1: UInt64 = 0,
                _ arg2: UInt64 = 0) -> UInt64 {
        var loop = startPortal(engine, vcpu: vcpu, number: number, arg1, arg2)
        while loop.trap(engine, guest: self) {}
        return loop.result
    }

    func startPortal(_ engine: PortalEngine, vcpu: VCPU, number: UInt32, _ arg1: UInt64 = 0,
                     _ arg2: UInt64 = 0) -> PortalLoop {
        if number != HypercallNumber.portalInterrupt.rawValue, flagAddress != 0, flagValue != 0 {
            _ = portal(engine, vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue, flagAddress)
        }
        return PortalLoop(vcpu: vcpu, number: number, arg1: arg1, arg2: arg2, region: freshRegion())
    }

    func releaseRegion(_ region: UInt64) {
        freeRegions.withLock { $0.append(region) }
    }

    /// Runs the command in `region` as the module does; returns the answer code.
    func serve(region: UInt64, vcpu: VCPU) -> UInt32 {
        var header = self.header(at: region)
        onServe?(header, vcpu)
        if let code = answerOverride?(header) { return code }
        let payload = region + UInt64(RegionHeader.size)
        let isKernel = header.address >= kernelBase
        switch header.op {
        case ops.read:
            var size = Int(min(header.size, UInt64(Int.max)))
            if isKernel { size = min(size, regionSize) }
            var data = [UInt8](repeating: 0, count: size)
            let got = data.withUnsafeMutableBytes { copyOut(header.address, into: $0) }
            if got < size && isKernel {
                header.size = 0
                header.op = ResponseCode.readFail.rawValue
            } else {
                store(Array(data[..<got]), at: payload)
                header.size = UInt64(got)
                header.op = (got == size ? ResponseCode.readOK : .readPartial).rawValue
            }
        case ops.write:
            let data = bytes(at: payload, count: min(Int(header.size), regionSize))
            let ok = data.withUnsafeBytes { copyIn(header.address, from: $0) } == data.count
            header.op = (ok ? ResponseCode.writeOK : .writeFail).rawValue
        case ops.readString:
            let limit = header.size == 0 || header.size > UInt64(regionSize - 1) ? regionSize - 1 : Int(header.size)
            var string: [UInt8] = []
            var failed = false
            while string.count < limit {
                var byte: UInt8 = 0
                guard withUnsafeMutableBytes(of: &byte, { copyOut(header.address + UInt64(string.count), into: $0) }) == 1
                else { failed = true; break }
                if byte == 0 { break }
                string.append(byte)
            }
            if failed {
                header.size = 0
                header.op = ResponseCode.readFail.rawValue
            } else {
                store(string + [0], at: payload)
                header.size = UInt64(string.count)
                header.op = ResponseCode.readOK.rawValue
            }
        case ops.readTime:
            header.size = clock.add(1000, ordering: .relaxed).newValue
            header.op = ResponseCode.readNumber.rawValue
        default:
            header.op = ResponseCode.writeFail.rawValue
        }
        setHeader(header, at: region)
        return header.op
    }
}

/// One guest conversation, a trap at a time, so tests can interleave vCPUs.
struct PortalLoop {
    let vcpu: VCPU
    let number: UInt32
    let arg1: UInt64
    let arg2: UInt64
    let region: UInt64
    /// arg4 of the next trap: 0, then the previous answer.
    var lastAnswer: UInt32 = 0
    /// The return register: the number until the host writes a result.
    var result: UInt64
    var traps = 0

    init(vcpu: VCPU, number: UInt32, arg1: UInt64, arg2: UInt64, region: UInt64) {
        self.vcpu = vcpu
        self.number = number
        self.arg1 = arg1
        self.arg2 = arg2
        self.region = region
        self.result = UInt64(number)
    }

    /// The guest gives up on this conversation (a kernel bug): its page is
    /// freed without the loop having ended.
    func abandon(_ guest: MockGuest) { guest.releaseRegion(region) }

    /// Traps once and serves the command the host wrote; false when the loop ended.
    mutating func trap(_ engine: PortalEngine, guest: MockGuest) -> Bool {
        traps += 1
        let outcome = engine.hypercall(
            Hypercall(number: UInt64(number), arg1: arg1, arg2: arg2, arg3: region, arg4: UInt64(lastAnswer),
                      vcpu: vcpu.index), vcpu: vcpu, memory: guest.memory, directMemory: guest.directView?.memory)
        if case .returning(let value) = outcome { result = value }
        let op = guest.header(at: region).op
        if op == 0 {
            guest.releaseRegion(region)
            return false
        }
        if Int32(bitPattern: op) <= 0 || op >= guest.ops.max {
            var header = guest.header(at: region)
            header.op = ResponseCode.writeFail.rawValue
            guest.setHeader(header, at: region)
            guest.releaseRegion(region)
            return false
        }
        lastAnswer = guest.serve(region: region, vcpu: vcpu)
        return true
    }
}

/// A fake emulator view of a mock guest's memory (QEMU's vaddr accessors in
/// the real plugin): the guest's own pages, except the `hidden` ones, which
/// it cannot reach although the guest can (swapped out, say). Every access
/// is recorded, as (address, length), and must fit in one call of the
/// accessor: a failed call transfers nothing here.
final class DirectView: @unchecked Sendable {
    /// Unowned: the guest holds its view (`MockGuest.directView`), so a
    /// strong reference back would be a cycle LeakSanitizer reports.
    unowned let guest: MockGuest
    let hidden: Lock<Set<UInt64>>
    private let accesses = Lock<[(write: Bool, address: UInt64, length: Int, ok: Bool)]>([])

    init(_ guest: MockGuest, hiding pages: Set<UInt64> = []) {
        self.guest = guest
        self.hidden = Lock(pages)
    }

    /// Whether every page of [address, address + length) is visible here.
    func reaches(_ address: UInt64, _ length: Int) -> Bool {
        guard length > 0 else { return true }
        let first = address & ~(MockGuest.pageSize - 1)
        let last = (address &+ UInt64(length) &- 1) & ~(MockGuest.pageSize - 1)
        return hidden.withLock { hidden in
            stride(from: first, through: last, by: Int(MockGuest.pageSize)).allSatisfy { !hidden.contains($0) }
        }
    }

    var reads: [String] { log(write: false) }
    var writes: [String] { log(write: true) }

    /// "0x4000+8 ok" or "0x5000+16 failed", in order.
    private func log(write: Bool) -> [String] {
        accesses.withLock { $0.filter { $0.write == write } }
            .map { "0x\(String($0.address, radix: 16))+\($0.length) \($0.ok ? "ok" : "failed")" }
    }

    fileprivate func record(write: Bool, _ address: UInt64, _ length: Int, _ ok: Bool) -> Bool {
        accesses.withLock { $0.append((write, address, length, ok)) }
        return ok
    }

    var memory: GuestMemory {
        GuestMemory(context: Unmanaged.passUnretained(self).toOpaque(), read: { context, address, buffer, length in
            let view = Unmanaged<DirectView>.fromOpaque(context!).takeUnretainedValue()
            let target = UnsafeMutableRawBufferPointer(start: buffer, count: length)
            var scratch = [UInt8](repeating: 0, count: length)
            let ok = view.reaches(address, length)
                && scratch.withUnsafeMutableBytes { view.guest.copyOut(address, into: $0) } == length
            if ok { target.copyBytes(from: scratch) }
            return view.record(write: false, address, length, ok)
        }, write: { context, address, buffer, length in
            let view = Unmanaged<DirectView>.fromOpaque(context!).takeUnretainedValue()
            let source = UnsafeRawBufferPointer(start: buffer, count: length)
            var mapped = true
            var page = address & ~(MockGuest.pageSize - 1)
            while mapped && page < address &+ UInt64(length) {
                mapped = view.guest.isMapped(page)
                page += MockGuest.pageSize
            }
            let ok = view.reaches(address, length) && mapped
            if ok { view.guest.copyIn(address, from: source) }
            return view.record(write: true, address, length, ok)
        })
    }
}

/// Collects log lines for exact assertions.
final class LogRecorder: Sendable {
    private let lines = Lock<[String]>([])

    var logger: PortalLogger { logger(level: .debug) }

    func logger(level: LogLevel) -> PortalLogger {
        PortalLogger(level: level) { [self] line in lines.withLock { $0.append(line) } }
    }

    var all: [String] { lines.withLock { $0 } }

    func matching(_ prefix: String) -> [String] { all.filter { $0.hasPrefix(prefix) } }
}

func makeEngine(_ configuration: PortalConfiguration = PortalConfiguration(),
                layout: GuestLayout = .little64, log: LogRecorder = LogRecorder()) -> PortalEngine {
    PortalEngine(configuration: configuration, layout: layout, logger: log.logger)
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(0) ... body(count - 1)` on that many new POSIX threads at once
/// (not the cooperative pool, which has one thread per core) and waits.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Start: @unchecked Sendable {
        let index: Int
        let body: @Sendable (Int) -> Void
        init(index: Int, body: @escaping @Sendable (Int) -> Void) {
            self.index = index
            self.body = body
        }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        var thread = pthread_t()
        let start = Unmanaged.passRetained(Start(index: index, body: body)).toOpaque()
        let created = pthread_create(&thread, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.body(start.index)
            return nil
        }, start)
        precondition(created == 0, "pthread_create failed")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

/// A guest with its region size registered, on one vCPU.
func bootedGuest(_ engine: PortalEngine, layout: GuestLayout = .little64, regionSize: Int = 4072,
                 regionPages: Int = 64, vcpuIndex: Int = 0) -> (MockGuest, VCPU) {
    let guest = MockGuest(layout: layout, regionSize: regionSize, regionPages: regionPages)
    let vcpu = engine.makeVCPU(index: vcpuIndex)
    guest.registerRegion(engine, vcpu: vcpu)
    return (guest, vcpu)
}
