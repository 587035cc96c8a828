@testable import PortalEngine
import Synchronization
import PortalTestSupport
import Testing

/// Answers and commands at the edges of PROTOCOL.md §4: short and empty
/// reads, answers that are no response code, ops outside the table, a
/// region larger than a page, and reads that meet holes in guest memory.
@Suite("Protocol edges")
struct ProtocolEdgeTests {
    /// A pattern that differs from byte to byte and from page to page.
    static func pattern(_ count: Int, seed: Int = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 12 &+ seed) }
    }

    @Test func partialReadsOfSomeBytesAndOfNoneKeepTheConversationGoing() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)      // 0x5000 is a hole
        let bytes = Self.pattern(4096)
        guest.store(bytes, at: 0x4000)
        let replies = Lock<[PortalResponse.Owned]>([])
        try engine.attach(.syscallEnter) { g in
            var got: [PortalResponse.Owned] = []
            got.append(try await g.send(PortalCommand(op: 1, address: 0x5000 - 40, size: 100)))
            got.append(try await g.send(PortalCommand(op: 1, address: 0x5000 + 16, size: 8)))
            got.append(try await g.send(PortalCommand(op: 1, address: 0x4000, size: 4)))
            replies.withLock { $0 = got }
            return 7
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.traps == 4)
        #expect(loop.result == 7)
        #expect(replies.withLock { $0 } == [
            .readPartial(Array(bytes[(4096 - 40)...])), .readPartial([]), .readOK(Array(bytes[..<4])),
        ])
    }

    /// Whatever the guest answers that is not a response code ends the
    /// conversation with NONE; the handler never sees it, and the next
    /// conversation on the same page starts afresh.
    @Test(arguments: [0x1234, 0xf000_0007, 0xefff_ffff, 0xffff_ffff, 1] as [UInt32])
    func anAnswerThatIsNoResponseCodeEndsTheConversation(code: UInt32) throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1)
        guest.map(0x4000, count: 4096)
        guest.store([77], at: 0x4000)
        guest.answerOverride = { header in header.address == 0x4bad ? code : nil }
        let answered = Counter()
        try engine.attach(.syscallEnter) { g in
            let value = try await g.read(UInt8.self, at: g.call.arg1)
            answered.add()
            return UInt64(value)
        }
        Self.expectEndedWithNone(engine, guest, vcpu, log, arg1: 0x4bad, traps: 2,
                                 error: "the guest answered \(hex(code)), expected a response code from 0xf0000000 to 0xf0000006",
                                 thenArg1: 0x4000, returns: 77)
        #expect(answered.value == 1)
    }

    /// An op the guest's table does not have (NONE, MAX, beyond) is never
    /// written: the guest would answer WRITE_FAIL and leave its loop without
    /// a trap. The conversation ends with NONE at that trap instead.
    @Test(arguments: [0, 56, 999] as [UInt32])
    func anOpOutsideTheTableIsNeverSent(op: UInt32) throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1)
        guest.map(0x4000, count: 4096)
        guest.store([5], at: 0x4000)
        try engine.attach(.syscallEnter) { g in
            if g.call.arg1 == 1 { _ = try await g.send(PortalCommand(op: op, address: 0x4000, size: 8)) }
            return UInt64(try await g.read(UInt8.self, at: 0x4000))
        }
        Self.expectEndedWithNone(engine, guest, vcpu, log, arg1: 1, traps: 1,
                                 error: "the work sent op \(op), expected an op from 1 to 55 of the op table",
                                 thenArg1: 2, returns: 5)
    }

    /// The guest's conversation with `arg1` ends at trap `traps` with NONE in
    /// the header, the number still in the return register and `error` as
    /// the only error line; the next one, on the same page with `thenArg1`,
    /// runs normally and returns `returns`.
    static func expectEndedWithNone(_ engine: PortalEngine, _ guest: MockGuest, _ vcpu: VCPU, _ log: LogRecorder,
                                    arg1: UInt64, traps: Int, error: String, thenArg1: UInt64, returns: UInt64) {
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event, arg1)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.traps == traps)
        #expect(loop.result == UInt64(event))
        #expect(guest.header(at: loop.region).op == 0)
        #expect(engine.liveConversations == 0)
        #expect(log.matching("error") == ["error: hypercall 0x1338 on vCPU 0, region 0x100000: " + error])
        var next = guest.startPortal(engine, vcpu: vcpu, number: event, thenArg1)
        #expect(next.region == loop.region)
        while next.trap(engine, guest: guest) {}
        #expect(next.result == returns)
    }

    /// 16 KiB guest pages: the registered region carries 16360 payload bytes,
    /// and a larger READ is cut to exactly that.
    @Test func aSixteenKiBRegionCarriesItsWholePayload() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine, regionSize: 16384 - 24, regionPages: 1)
        guest.map(0x10_0000, count: 16384)
        guest.map(0x20000, count: 0x8000)
        let bytes = Self.pattern(0x8000)
        guest.store(bytes, at: 0x20000)
        let sent = Lock<[RegionHeader]>([])
        guest.onServe = { header, _ in sent.withLock { $0.append(header) } }
        let reply = Lock<PortalResponse.Owned?>(nil)
        try engine.attach(.syscallEnter) { g in
            let answer = try await g.send(PortalCommand(op: 1, address: 0x20000, size: 20000))
            reply.withLock { $0 = answer }
            return UInt64(g.regionSize)
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 16360)
        #expect(sent.withLock { $0 } == [RegionHeader(op: 1, pid: 0xffff_ffff, address: 0x20000, size: 16360)])
        #expect(reply.withLock { $0 } == .readOK(Array(bytes[..<16360])))
    }

    /// Kernel reads are all or nothing (a chunk touching a hole fails
    /// whole): a read stops at the first failed chunk with what arrived
    /// before it, and a short last chunk is asked for at its own size.
    @Test func aKernelReadStopsAtTheFirstChunkTouchingAHole() throws {
        let engine = makeEngine(layout: .big32)
        let (guest, vcpu) = bootedGuest(engine, layout: .big32)
        let kernel: UInt64 = 0xc000_0000
        guest.map(kernel, count: 0x2000)             // kernel + 0x2000 is a hole
        guest.map(kernel + 0x3000, count: 0x2000)
        let low = Self.pattern(0x2000), high = Self.pattern(0x2000, seed: 9)
        guest.store(low, at: kernel)
        guest.store(high, at: kernel + 0x3000)
        let sent = Lock<[[UInt64]]>([])
        guest.onServe = { header, _ in sent.withLock { $0.append([UInt64(header.op), header.address, header.size]) } }
        let outcome = Lock<(String, [UInt8], [UInt8])>(("", [], []))
        let tail = kernel + 0x100 + 3 * 4072
        try engine.attach(.syscallEnter) { g in
            var failure = ""
            do { _ = try await g.readBytes(at: kernel + 0x100, count: 3 * 4072 + 100) } catch { failure = "\(error)" }
            let arrived = try await g.readAvailableBytes(at: kernel + 0x100, count: 3 * 4072 + 100)
            let last = try await g.readBytes(at: tail, count: 100)
            outcome.withLock { $0 = (failure, arrived, last) }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        let (error, arrived, last) = outcome.withLock { $0 }
        #expect(error == "reading 12316 bytes at 0xc0000100 stopped after 4072 bytes (READ_FAIL)")
        #expect(arrived == Array(low[0x100..<(0x100 + 4072)]))
        #expect(last == Array(high[Int(tail - kernel - 0x3000)..<Int(tail - kernel - 0x3000 + 100)]))
        let chunk1 = kernel + 0x100 + 4072
        #expect(sent.withLock { $0 } == [
            [1, kernel + 0x100, 4072], [1, chunk1, 4072], [1, kernel + 0x100, 4072], [1, chunk1, 4072],
            [1, tail, 100],
        ])
    }

    /// A string running into a hole fails; one that stops in time (a
    /// limit) is read; one starting in the hole fails at once.
    @Test func aStringRunningIntoAHoleFails() throws {
        let engine = makeEngine(layout: .big64)
        let (guest, vcpu) = bootedGuest(engine, layout: .big64)
        guest.map(0x1000, count: 4096)               // 0x2000 is a hole
        guest.store(Array("abcde".utf8), at: 0x2000 - 5)
        let results = Lock<[String]>([])
        try engine.attach(.syscallEnter) { g in
            var got: [String] = []
            for (address, limit) in [(0x2000 - 5, nil), (0x2000 - 5, 5), (0x2000 + 8, nil)] as [(UInt64, Int?)] {
                do { got.append(try await g.readString(at: address, maxLength: limit)) } catch { got.append("\(error)") }
            }
            results.withLock { $0 = got }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(results.withLock { $0 } == [
            "reading 4072 bytes at 0x1ffb stopped after 5 bytes (READ_FAIL)",
            "abcde",
            "reading 4072 bytes at 0x2008 stopped after 0 bytes (READ_FAIL)",
        ])
    }

    /// A string with no NUL is cut at its limit (one region by default),
    /// each READ_STR ending at a page boundary or the limit.
    @Test func aStringIsCutAtItsLimitInPageBoundedCommands() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x10000, count: 0x2000)
        guest.store([UInt8](repeating: 0x78, count: 5000), at: 0x10100)
        guest.store(Array("init_task".utf8) + [0], at: 0x11800)
        let sent = Lock<[[UInt64]]>([])
        guest.onServe = { header, _ in sent.withLock { $0.append([UInt64(header.op), header.address, header.size]) } }
        let lengths = Lock<[Int]>([])
        let short = Lock("")
        try engine.attach(.syscallEnter) { g in
            let long = try await g.readCString(at: 0x10100)
            let name = try await g.readString(at: 0x11800, maxLength: 4)
            lengths.withLock { $0 = [long.count, long.filter { $0 != 0x78 }.count] }
            short.withLock { $0 = name }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(lengths.withLock { $0 } == [4072, 0])
        #expect(short.withLock { $0 } == "init")
        #expect(sent.withLock { $0 } == [[3, 0x10100, 0xf00], [3, 0x11000, 4072 - 0xf00], [3, 0x11800, 4]])
    }
}
