import PortalEngine
import Synchronization

/// The one Swift model of the guest kernel module (PROTOCOL.md §4–§6) that
/// the Swift tests drive the engine through, exactly as an emulator would:
/// a sparse 4 KiB-paged memory with holes, a pool of region pages, the
/// conversation loop of `igloo_portal`, and the module's handlers.
///
/// Two layers. This file is what the engine needs: memory, regions, the
/// interrupt flag, and the ops READ, WRITE, READ_STR and READ_TIME.
/// MockGuest+World.swift adds the world the typed operations read
/// (processes, mappings, fds, files, programs, symbols), served in the exact
/// formats of §6 (an engine test leaves `world` empty: no processes, no
/// files). An op neither layer implements (DUMP, FFI_EXEC, the hooks, ...)
/// answers WRITE_FAIL.
///
/// Thread-safe for what the engine tests do from several vCPU threads at
/// once (memory, regions, the command log); the world is served from one
/// thread at a time, as the typed-operation tests do.
package final class MockGuest: @unchecked Sendable {
    package static let pageSize: UInt64 = 4096

    package let layout: GuestLayout
    package let ops: OpTable
    /// Payload bytes per region (PAGE_SIZE - 24).
    package let regionSize: Int
    /// Addresses at or above are "kernel" addresses (all-or-nothing reads).
    package var kernelBase: UInt64
    /// READ_TIME answers this.
    package let clock = Atomic<UInt64>(1_000_000)

    private let pages = Lock<[UInt64: [UInt8]]>([:])
    /// Free pages for regions, first in first out, so addresses recur as
    /// with a kernel's page allocator, but never while a conversation uses one.
    private let freeRegions: Lock<[UInt64]>
    package private(set) var flagAddress: UInt64 = 0
    private let servedCommands = Lock<[String]>([])

    /// Lets a test answer a command its own way (e.g. with an invalid code);
    /// returning nil serves it normally.
    package var answerOverride: (@Sendable (RegionHeader) -> UInt32?)?
    /// Runs while the guest serves a command (e.g. to start a nested conversation).
    package var onServe: (@Sendable (RegionHeader, VCPU) -> Void)?
    /// Rewrites an answer after it was made (code, header, payload) to attack
    /// the host; gets the op's name and the command.
    package var tamper: ((_ op: String, _ request: RegionHeader, _ answer: inout RegionHeader,
                          _ payload: inout [UInt8]) -> Void)?
    /// The emulator's own view of this guest's memory that traps offer the
    /// engine (`directMemory:`), as QEMU's front end does; nil offers none.
    package var directView: DirectView?

    /// What the typed operations find in this guest (MockGuest+World.swift).
    package var world: World
    /// What serving the world's ops changed: open files, programs run,
    /// kernel buffers handed out.
    var kernel: KernelState

    /// - Parameters:
    ///   - world: the processes, files, ... the typed operations read;
    ///     processes with arguments get their argv areas mapped.
    ///   - regionPages: region pages in the pool, two 4 KiB pages apart from
    ///     `regionBase` (the first conversation's region).
    package init(layout: GuestLayout = .little64, world: World = World(), ops: OpTable = .standard,
                 regionSize: Int = 4072, regionPages: Int = 64, regionBase: UInt64 = 0x10_0000) {
        self.layout = layout
        self.ops = ops
        self.regionSize = regionSize
        self.world = world
        self.kernel = KernelState(layout: layout)
        self.kernelBase = layout.wordBits == 64 ? 0xffff_8000_0000_0000 : 0xc000_0000
        let pool = (0..<UInt64(regionPages)).map { regionBase + $0 * 2 * MockGuest.pageSize }
        freeRegions = Lock(pool)
        for page in pool { map(page, count: MockGuest.pageSize * 2) }
        mapArgumentAreas()
    }

    // MARK: Memory

    package func map(_ address: UInt64, count: UInt64, fill: UInt8 = 0) {
        pages.withLock { pages in
            var page = address & ~(Self.pageSize - 1)
            while page < address + count {
                if pages[page] == nil { pages[page] = [UInt8](repeating: fill, count: Int(Self.pageSize)) }
                page += Self.pageSize
            }
        }
    }

    package func isMapped(_ address: UInt64) -> Bool {
        pages.withLock { $0[address & ~(Self.pageSize - 1)] != nil }
    }

    package func unmap(_ address: UInt64) {
        _ = pages.withLock { $0.removeValue(forKey: address & ~(Self.pageSize - 1)) }
    }

    /// Runs `body` on each page-sized piece of [address, address + count)
    /// (the address wrapping as the layout's does) while it is mapped:
    /// (page bytes, offset in the page, offset in the range, length).
    /// Returns how many bytes were mapped from the start.
    private func eachMappedPiece(_ address: UInt64, count: Int,
                                 _ body: (inout [UInt8], Int, Int, Int) -> Void) -> Int {
        pages.withLock { pages in
            var done = 0
            while done < count {
                let at = (address &+ UInt64(done)) & layout.addressMask
                let page = at & ~(Self.pageSize - 1)
                guard pages[page] != nil else { return done }
                let offset = Int(at - page)
                let chunk = min(count - done, Int(Self.pageSize) - offset)
                body(&pages[page]!, offset, done, chunk)
                done += chunk
            }
            return done
        }
    }

    /// Copies as many bytes as are mapped from the start; returns how many.
    @discardableResult
    package func copyOut(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        eachMappedPiece(address, count: buffer.count) { page, offset, done, chunk in
            page.withUnsafeBytes {
                (buffer.baseAddress! + done).copyMemory(from: $0.baseAddress! + offset, byteCount: chunk)
            }
        }
    }

    /// Copies as many bytes as are mapped from the start; returns how many.
    @discardableResult
    package func copyIn(_ address: UInt64, from buffer: UnsafeRawBufferPointer) -> Int {
        eachMappedPiece(address, count: buffer.count) { page, offset, done, chunk in
            page.withUnsafeMutableBytes {
                ($0.baseAddress! + offset).copyMemory(from: buffer.baseAddress! + done, byteCount: chunk)
            }
        }
    }

    /// This guest's memory as the engine takes it.
    package var memory: GuestMemory {
        GuestMemory(context: Unmanaged.passUnretained(self).toOpaque(), read: { context, address, buffer, length in
            let guest = Unmanaged<MockGuest>.fromOpaque(context!).takeUnretainedValue()
            return guest.copyOut(address, into: UnsafeMutableRawBufferPointer(start: buffer, count: length)) == length
        }, write: { context, address, buffer, length in
            let guest = Unmanaged<MockGuest>.fromOpaque(context!).takeUnretainedValue()
            return guest.copyIn(address, from: UnsafeRawBufferPointer(start: buffer, count: length)) == length
        })
    }

    /// The bytes mapped from `address` on, at most `count`: shorter at a hole.
    package func mappedBytes(at address: UInt64, count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        let got = result.withUnsafeMutableBytes { copyOut(address, into: $0) }
        return Array(result[..<got])
    }

    /// `count` bytes from `address`, zeros where nothing is mapped.
    package func bytes(at address: UInt64, count: Int) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        result.withUnsafeMutableBytes { _ = copyOut(address, into: $0) }
        return result
    }

    /// Writes what is mapped of [address, address + bytes.count).
    package func store(_ bytes: [UInt8], at address: UInt64) {
        bytes.withUnsafeBytes { _ = copyIn(address, from: $0) }
    }

    package func header(at region: UInt64) -> RegionHeader {
        bytes(at: region, count: RegionHeader.size).withUnsafeBytes {
            RegionHeader(decoding: $0.baseAddress!, layout: layout)
        }
    }

    package func setHeader(_ header: RegionHeader, at region: UInt64) {
        var raw = [UInt8](repeating: 0, count: RegionHeader.size)
        raw.withUnsafeMutableBytes { header.encode(to: $0.baseAddress!, layout: layout) }
        store(raw, at: region)
    }

    // MARK: The guest module

    /// Takes the next page of the pool: header zeroed, payload left stale.
    package func freshRegion() -> UInt64 {
        let region = freeRegions.withLock { free in
            precondition(!free.isEmpty, "the mock guest ran out of region pages")
            return free.removeFirst()
        }
        store([UInt8](repeating: 0, count: RegionHeader.size), at: region)
        store([UInt8](repeating: 0xa5, count: regionSize), at: region + UInt64(RegionHeader.size))
        return region
    }

    package func registerRegion(_ engine: PortalEngine, vcpu: VCPU) {
        _ = engine.hypercall(Hypercall(number: UInt64(HypercallNumber.registerMemRegion.rawValue),
                                       arg1: UInt64(regionSize), vcpu: vcpu.index), vcpu: vcpu, memory: memory)
    }

    package func enableInterrupts(_ engine: PortalEngine, vcpu: VCPU, flag: UInt64) {
        map(flag, count: 8)
        flagAddress = flag
        _ = engine.hypercall(Hypercall(number: UInt64(HypercallNumber.enablePortalInterrupt.rawValue),
                                       arg1: flag, vcpu: vcpu.index), vcpu: vcpu, memory: memory)
    }

    package var flagValue: UInt64 {
        bytes(at: flagAddress, count: 8).withUnsafeBytes { layout.load(UInt64.self, from: $0.baseAddress!) }
    }

    /// `igloo_portal(num, a1, a2)`: the whole conversation, interrupt check first.
    package func portal(_ engine: PortalEngine, vcpu: VCPU, number: UInt32, _ arg1: UInt64 = 0,
                        _ arg2: UInt64 = 0) -> UInt64 {
        var loop = startPortal(engine, vcpu: vcpu, number: number, arg1, arg2)
        while loop.trap(engine, guest: self) {}
        return loop.result
    }

    package func startPortal(_ engine: PortalEngine, vcpu: VCPU, number: UInt32, _ arg1: UInt64 = 0,
                             _ arg2: UInt64 = 0) -> PortalLoop {
        if number != HypercallNumber.portalInterrupt.rawValue, flagAddress != 0, flagValue != 0 {
            _ = portal(engine, vcpu: vcpu, number: HypercallNumber.portalInterrupt.rawValue, flagAddress)
        }
        return PortalLoop(vcpu: vcpu, number: number, arg1: arg1, arg2: arg2, region: freshRegion())
    }

    package func releaseRegion(_ region: UInt64) {
        freeRegions.withLock { $0.append(region) }
    }

    /// Every command served, as `OP pid=P addr=A size=S`, for round-trip counts.
    package var served: [String] { servedCommands.withLock { $0 } }

    /// The commands served while `body` ran, as `served` lists them: what
    /// the host asked of the guest in the conversations `body` ran.
    package func served(during body: () -> Void) -> [String] {
        let before = servedCommands.withLock { $0.count }
        body()
        return Array(served.dropFirst(before))
    }

    /// Runs the command in `region` as the module does; returns the answer code.
    package func serve(region: UInt64, vcpu: VCPU) -> UInt32 {
        let request = header(at: region)
        onServe?(request, vcpu)
        if let code = answerOverride?(request) { return code }
        let name = ops.name(of: request.op) ?? "?"
        servedCommands.withLock {
            $0.append("\(name) pid=\(Int32(bitPattern: request.pid)) addr=\(Int64(bitPattern: request.address)) size=\(request.size)")
        }
        let payloadAddress = region + UInt64(RegionHeader.size)
        var answer = request
        var payload: [UInt8] = []
        switch request.op {
        case ops.read:
            let isKernel = request.address >= kernelBase
            let size = Int(min(request.size, UInt64(regionSize)))
            let data = mappedBytes(at: request.address, count: size)
            if data.count < size && isKernel {
                answer.size = 0
                answer.op = ResponseCode.readFail.rawValue
            } else {
                payload = data
                answer.size = UInt64(data.count)
                answer.op = (data.count == size ? ResponseCode.readOK : .readPartial).rawValue
            }
        case ops.write:
            let data = bytes(at: payloadAddress, count: Int(min(request.size, UInt64(regionSize))))
            let ok = data.withUnsafeBytes { copyIn(request.address, from: $0) } == data.count
            answer.op = (ok ? ResponseCode.writeOK : .writeFail).rawValue
        case ops.readString:
            let limit = request.size == 0 || request.size > UInt64(regionSize - 1) ? regionSize - 1 : Int(request.size)
            var string: [UInt8] = []
            var failed = false
            while string.count < limit {
                guard let byte = mappedBytes(at: request.address + UInt64(string.count), count: 1).first
                else { failed = true; break }
                if byte == 0 { break }
                string.append(byte)
            }
            if failed {
                answer.size = 0
                answer.op = ResponseCode.readFail.rawValue
            } else {
                payload = string + [0]
                answer.size = UInt64(string.count)
                answer.op = ResponseCode.readOK.rawValue
            }
        case ops.readTime:
            answer.size = clock.add(1000, ordering: .relaxed).newValue
            answer.op = ResponseCode.readNumber.rawValue
        default:
            serveWorld(name, request, payloadAddress: payloadAddress, answer: &answer, payload: &payload)
        }
        tamper?(name, request, &answer, &payload)
        store(payload, at: payloadAddress)
        setHeader(answer, at: region)
        return answer.op
    }
}

/// One guest conversation, a trap at a time, so tests can interleave vCPUs.
package struct PortalLoop {
    package let vcpu: VCPU
    package let number: UInt32
    package let arg1: UInt64
    package let arg2: UInt64
    package let region: UInt64
    /// arg4 of the next trap: 0, then the previous answer.
    package var lastAnswer: UInt32 = 0
    /// The return register: the number until the host writes a result.
    package var result: UInt64
    package var traps = 0

    package init(vcpu: VCPU, number: UInt32, arg1: UInt64, arg2: UInt64, region: UInt64) {
        self.vcpu = vcpu
        self.number = number
        self.arg1 = arg1
        self.arg2 = arg2
        self.region = region
        self.result = UInt64(number)
    }

    /// The guest gives up on this conversation (a kernel bug): its page is
    /// freed without the loop having ended.
    package func abandon(_ guest: MockGuest) { guest.releaseRegion(region) }

    /// Traps once and serves the command the host wrote; false when the loop ended.
    package mutating func trap(_ engine: PortalEngine, guest: MockGuest) -> Bool {
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
package final class DirectView: @unchecked Sendable {
    /// Unowned: the guest holds its view (`MockGuest.directView`), so a
    /// strong reference back would be a cycle LeakSanitizer reports.
    package unowned let guest: MockGuest
    package let hidden: Lock<Set<UInt64>>
    private let accesses = Lock<[(write: Bool, address: UInt64, length: Int, ok: Bool)]>([])

    package init(_ guest: MockGuest, hiding pages: Set<UInt64> = []) {
        self.guest = guest
        self.hidden = Lock(pages)
    }

    /// Whether every page of [address, address + length) is visible here.
    package func reaches(_ address: UInt64, _ length: Int) -> Bool {
        guard length > 0 else { return true }
        let first = address & ~(MockGuest.pageSize - 1)
        let last = (address &+ UInt64(length) &- 1) & ~(MockGuest.pageSize - 1)
        return hidden.withLock { hidden in
            stride(from: first, through: last, by: Int(MockGuest.pageSize)).allSatisfy { !hidden.contains($0) }
        }
    }

    package var reads: [String] { log(write: false) }
    package var writes: [String] { log(write: true) }

    /// "0x4000+8 ok" or "0x5000+16 failed", in order.
    private func log(write: Bool) -> [String] {
        accesses.withLock { $0.filter { $0.write == write } }
            .map { "0x\(String($0.address, radix: 16))+\($0.length) \($0.ok ? "ok" : "failed")" }
    }

    fileprivate func record(write: Bool, _ address: UInt64, _ length: Int, _ ok: Bool) -> Bool {
        accesses.withLock { $0.append((write, address, length, ok)) }
        return ok
    }

    package var memory: GuestMemory {
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
