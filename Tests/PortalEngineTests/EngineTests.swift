@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing

let event: UInt32 = HypercallNumber.syscallEnter.rawValue

@Suite("Conversations")
struct ConversationTests {
    @Test func handlerThatNeedsNoGuestJustReturns() throws {
        let engine = makeEngine()
        try engine.attach(.syscallEnter) { guest in guest.call.arg1 + guest.call.arg2 }
        let (guest, vcpu) = bootedGuest(engine)
        #expect(guest.portal(engine, vcpu: vcpu, number: event, 40, 2) == 42)
        #expect(engine.liveConversations == 0)
    }

    @Test func frontEndsCanReadOnlyTheRegistersTheEngineNeeds() throws {
        let engine = makeEngine()
        try engine.attach(.syscallEnter) { _ in 0 }
        let vcpu = engine.makeVCPU(index: 0)
        #expect(engine.serves(0x1338, vcpu: vcpu))
        #expect(engine.serves(0xffff_ffff_bebe_bebe, vcpu: vcpu))
        #expect(engine.serves(0x7902, vcpu: vcpu))
        #expect(!engine.serves(0x1339, vcpu: vcpu))
        #expect(PortalEngine.needsArguments(number: 0x1338, answer: 0))
        #expect(PortalEngine.needsArguments(number: 0x1338, answer: 0xffff_ffff_0000_0000))
        #expect(!PortalEngine.needsArguments(number: 0x1338, answer: UInt64(ResponseCode.readOK.rawValue)))
        #expect(PortalEngine.needsArguments(number: 0xbebe_bebe, answer: 7))
        #expect(PortalEngine.needsArguments(number: 0x7901, answer: 7))
    }

    @Test func unattachedHypercallIsNotClaimed() {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        let outcome = engine.hypercall(Hypercall(number: 0x1234, arg3: 0x10_0000), vcpu: vcpu, memory: guest.memory)
        #expect(outcome == .notMine)
    }

    @Test(arguments: [GuestLayout.little64, .little32, .big32, .big64])
    func readsAndWritesIntegersInGuestOrder(layout: GuestLayout) throws {
        let engine = makeEngine(layout: layout)
        let (guest, vcpu) = bootedGuest(engine, layout: layout)
        guest.map(0x4000, count: 4096)
        guest.store(layout.bytes(of: UInt32(0xcafe_f00d)), at: 0x4000)
        try engine.attach(.syscallEnter) { guest in
            let value = try await guest.read(UInt32.self, at: guest.call.arg1)
            try await guest.write(UInt16(0xbeef), at: guest.call.arg1 + 8)
            try await guest.writePointer(0x1122_3344_5566_7788, at: guest.call.arg1 + 16)
            return UInt64(value) + UInt64(try await guest.readPointer(at: guest.call.arg1 + 16))
        }
        let pointer: UInt64 = layout.wordBits == 64 ? 0x1122_3344_5566_7788 : 0x5566_7788
        #expect(guest.portal(engine, vcpu: vcpu, number: event, 0x4000) == 0xcafe_f00d + pointer)
        #expect(guest.bytes(at: 0x4008, count: 2) == layout.bytes(of: UInt16(0xbeef)))
    }

    @Test func everyResponseCodeIsItsOwnReply() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        guest.store([1, 2, 3, 4], at: 0x4000)
        let replies = Lock<[PortalResponse.Owned]>([])
        try engine.attach(.syscallEnter) { g in
            var got: [PortalResponse.Owned] = []
            got.append(try await g.send(PortalCommand(op: 1, address: 0x4000, size: 4)))          // READ_OK
            got.append(try await g.send(PortalCommand(op: 1, address: 0x4ffe, size: 4)))          // READ_PARTIAL
            got.append(try await g.send(PortalCommand(op: 1, address: 0xffff_8000_0000_0000, size: 4))) // READ_FAIL
            got.append(try await g.send(PortalCommand(op: 2, address: 0x4000, size: 1, payload: .bytes([9]))))
            got.append(try await g.send(PortalCommand(op: 2, address: 0x9000, size: 1, payload: .bytes([9]))))
            got.append(try await g.send(PortalCommand(op: 17)))                                    // READ_NUM
            got.append(try await g.send(PortalCommand(op: 5)))                                     // DUMP: unserved
            replies.withLock { $0 = got }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(replies.withLock { $0 } == [
            .readOK([1, 2, 3, 4]), .readPartial([0, 0]), .readFail, .writeOK, .writeFail,
            .number(1_001_000), .writeFail,
        ])
        #expect(guest.bytes(at: 0x4000, count: 1) == [9])
    }

    @Test func chunkedReadAcrossRegionsStopsAtAHole() async throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionSize: 1000)
        // 3 pages mapped, then a hole, then more.
        guest.map(0x20000, count: 3 * 4096)
        guest.map(0x24000, count: 4096)
        let pattern = (0..<(3 * 4096)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        guest.store(pattern, at: 0x20000)
        let result = Lock<([UInt8], GuestError?)>(([], nil))
        try engine.attach(.syscallEnter) { g in
            let whole = try await g.readBytes(at: 0x20000 + 100, count: 2500)
            do {
                _ = try await g.readBytes(at: 0x20000 + 11000, count: 3000)
            } catch let error as GuestError {
                let partial = try await g.readAvailableBytes(at: 0x20000 + 11000, count: 3000)
                result.withLock { $0 = (whole + partial, error) }
            }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        let (bytes, caught) = result.withLock { $0 }
        #expect(Array(bytes[..<2500]) == Array(pattern[100..<2600]))
        #expect(Array(bytes[2500...]) == Array(pattern[11000...]))
        #expect(bytes.count == 2500 + 1288)
        // The read that stops short says how far it got, in fields as well as words.
        let error = try #require(caught)
        #expect(error.code == .readFailed)
        #expect(error.code.name == "read-failed")
        #expect(error.op == OpTable.standard.read)
        #expect(error.address == 0x22af8)
        #expect(error.count == 3000)
        #expect(error.bytesDone == 1288)
        #expect(error.response == .readPartial)
        #expect(error.opName == nil)
        #expect(error.description == "reading 3000 bytes at 0x22af8 stopped after 1288 bytes (READ_PARTIAL)")
        #expect(log.matching("error").isEmpty)
    }

    /// A length taken from guest data can be anything: the read fails at the
    /// first chunk the guest cannot serve, with no huge allocation first.
    @Test func wildReadLengthFailsAtTheFirstMissingChunk() async throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine, regionSize: 1000)
        guest.map(0x20000, count: 4096)
        let failure = Lock("")
        try engine.attach(.syscallEnter) { g in
            do {
                _ = try await g.readBytes(at: 0x20000, count: Int.max)
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(failure.withLock { $0 } == "reading \(Int.max) bytes at 0x20000 stopped after 4096 bytes (READ_PARTIAL)")
    }

    @Test func bulkWriteThenReadBackLargerThanARegion() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x40000, count: 4 * 4096)
        let data = (0..<10000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        try engine.attach(.syscallEnter) { g in
            try await g.write(data, at: 0x40000)
            let back = try await g.readBytes(at: 0x40000, count: data.count)
            return back == data ? 1 : 0
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 1)
        #expect(guest.bytes(at: 0x40000, count: 10000) == data)
    }

    @Test func stringCrossingAGuestPage() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x50000, count: 2 * 4096)
        let text = Array("crossing the page boundary".utf8)
        guest.store(text + [0], at: 0x51000 - 10)
        let got = Lock<String>("")
        try engine.attach(.syscallEnter) { g in
            let string = try await g.readString(at: 0x51000 - 10)
            got.withLock { $0 = string }
            return UInt64(string.utf8.count)
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == UInt64(text.count))
        #expect(got.withLock { $0 } == "crossing the page boundary")
    }

    /// Each READ_STR stays within one guest page: a string that ends just
    /// before an unmapped page is read without touching that page.
    @Test func stringEndingBeforeAnUnmappedPage() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x60000, count: 4096)
        guest.store(Array("tail".utf8) + [0], at: 0x61000 - 5)
        let commands = Lock<[RegionHeader]>([])
        guest.onServe = { header, _ in commands.withLock { $0.append(header) } }
        try engine.attach(.syscallEnter) { g in UInt64(try await g.readCString(at: 0x61000 - 5).count) }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 4)
        let sent = commands.withLock { $0 }.map { [UInt64($0.op), $0.address, $0.size] }
        #expect(sent == [[UInt64(engine.configuration.ops.readString), 0x61000 - 5, 5]])
    }

    @Test func readTimeAndRawNumberQueries() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        let refusal = Lock("")
        try engine.attach(.syscallEnter) { g in
            let first = try await g.readTime()
            let second = try await g.readNumber(op: g.ops.readTime)
            do {
                // The mock guest answers ops it does not implement with WRITE_FAIL.
                _ = try await g.readNumber(op: try g.op(named: "FFI_EXEC"), size: 8)
            } catch {
                refusal.withLock { $0 = "\(error)" }
            }
            return second - first
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 1000)
        #expect(refusal.withLock { $0 } == "op 32 answered WRITE_FAIL, expected READ_NUM")
    }
}

@Suite("Failures end conversations cleanly")
struct FailureTests {
    @Test func invalidResponseCodeEndsTheConversationAndTheNextOneWorks() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        guest.answerOverride = { header in header.address == 0x4bad ? 0x1234 : nil }
        try engine.attach(.syscallEnter) { g in UInt64(try await g.read(UInt8.self, at: g.call.arg1)) }
        let region = 0x10_0000 as UInt64
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event, 0x4bad)
        #expect(loop.region == region)
        while loop.trap(engine, guest: guest) {}
        #expect(loop.traps == 2)
        #expect(loop.result == UInt64(event))
        #expect(guest.header(at: region).op == 0)
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the guest answered 0x1234, expected a response code from 0xf0000000 to 0xf0000006",
        ])
        #expect(engine.liveConversations == 0)
        guest.answerOverride = nil
        guest.store([77], at: 0x4000)
        #expect(guest.portal(engine, vcpu: vcpu, number: event, 0x4000) == 77)
    }

    struct Boom: Error, CustomStringConvertible { var description: String { "boom" } }

    @Test func throwingHandlerFollowedByAGoodConversationOnTheSameRegion() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1, vcpuIndex: 3)
        guest.map(0x4000, count: 4096)
        try engine.attach(.syscallEnter) { g in
            let value = try await g.read(UInt8.self, at: 0x4000)
            if g.call.arg1 == 1 { throw Boom() }
            return UInt64(value) + 1
        }
        var failing = guest.startPortal(engine, vcpu: vcpu, number: event, 1)
        while failing.trap(engine, guest: guest) {}
        #expect(failing.traps == 2)
        #expect(guest.header(at: failing.region).op == 0)
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 3, region 0x100000: the work failed: boom",
        ])
        #expect(engine.liveConversations == 0)
        var good = guest.startPortal(engine, vcpu: vcpu, number: event, 2)
        #expect(good.region == failing.region)
        while good.trap(engine, guest: guest) {}
        #expect(good.result == 1)
    }

    /// An error's text may hold anything: the log line stays one line.
    @Test func controlCharactersInAnErrorAreEscapedInTheLog() throws {
        struct Multiline: Error, CustomStringConvertible { var description: String { "first\nsecond\u{1b}[2J" } }
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1)
        try engine.attach(.syscallEnter) { _ in throw Multiline() }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the work failed: first\\u{a}second\\u{1b}[2J",
        ])
    }

    @Test func abandonedConversationIsReclaimed() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine, regionPages: 1)
        guest.map(0x4000, count: 4096)
        try engine.attach(.syscallEnter) { g in
            _ = try await g.read(UInt8.self, at: 0x4000)
            _ = try await g.read(UInt8.self, at: 0x4000)
            return 5
        }
        var abandoned = guest.startPortal(engine, vcpu: vcpu, number: event)
        let continues = abandoned.trap(engine, guest: guest)
        #expect(continues)
        #expect(engine.liveConversations == 1)
        abandoned.abandon(guest)
        // The guest gives up and starts over on the same page.
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 5)
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: the guest started a new conversation on this region; the unfinished one was dropped",
        ])
        #expect(engine.liveConversations == 0)
    }

    @Test func invalidOpFromTheWorkIsRefused() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        try engine.attach(.syscallEnter) { g in
            _ = try await g.send(PortalCommand(op: 56))
            return 1
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == UInt64(event))
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the work sent op 56, expected an op from 1 to 55 of the op table",
        ])
    }

    @Test func answerLargerThanTheRegionIsRefused() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.answerOverride = { _ in nil }
        guest.onServe = nil
        try engine.attach(.syscallEnter) { g in
            _ = try await g.send(PortalCommand(op: 1, address: 0x10_0000, size: 8))
            return 1
        }
        // The guest claims 5000 payload bytes.
        guest.answerOverride = { [unowned guest] header in
            guest.setHeader(RegionHeader(op: ResponseCode.readOK.rawValue, pid: 0, address: 0, size: 5000),
                            at: 0x10_0000)
            return ResponseCode.readOK.rawValue
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the guest answered READ_OK with size 5000, more than the region's 4072 payload bytes",
        ])
        #expect(guest.header(at: 0x10_0000).op == 0)
    }

    @Test func unwritableRegionFailsTheConversation() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        try engine.attach(.syscallEnter) { g in UInt64(try await g.read(UInt8.self, at: 0x4000)) }
        let outcome = engine.hypercall(Hypercall(number: UInt64(event), arg3: 0xdead_0000), vcpu: vcpu, memory: guest.memory)
        #expect(outcome == .handled)
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0xdead0000: the region cannot be written (24 bytes)",
        ])
        #expect(engine.liveConversations == 0)
    }

    @Test func strayAnswerEndsTheGuestLoop() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        try engine.attach(.syscallEnter) { _ in 1 }
        guest.setHeader(RegionHeader(op: ResponseCode.readOK.rawValue, pid: 0, address: 0, size: 0), at: 0x10_0000)
        let outcome = engine.hypercall(
            Hypercall(number: UInt64(event), arg3: 0x10_0000, arg4: UInt64(ResponseCode.readOK.rawValue)),
            vcpu: vcpu, memory: guest.memory)
        #expect(outcome == .handled)
        #expect(guest.header(at: 0x10_0000).op == 0)
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: the guest answered READ_OK but no conversation is live on this region; its loop was ended",
        ])
    }

    /// The handler awaits something that is not the guest, which goes on
    /// only after the trap returned: the conversation fails at once, and the
    /// handler later continues on the thread that resumed it, where its next
    /// guest operation throws.
    @Test func handlerAwaitingSomethingElseIsEndedCleanly() async throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        let (gate, open) = AsyncStream<Void>.makeStream()
        let (reports, report) = AsyncStream<String>.makeStream()
        try engine.attach(.syscallEnter) { g in
            for await _ in gate { break }
            do {
                _ = try await g.read(UInt8.self, at: 0x4000)
                report.yield("read")
            } catch {
                report.yield("\(error)")
            }
            return 1
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == UInt64(event))
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the handler awaited something other than a guest operation; handlers may only await the guest",
        ])
        #expect(engine.liveConversations == 0)
        open.yield()
        var iterator = reports.makeAsyncIterator()
        #expect(await iterator.next() == "the conversation has ended")
    }

    /// The same, with the handler resumed by another thread at once: the
    /// resume may land while the trap still runs the handler (its read then
    /// goes to the guest), or after the trap let it go (the read throws).
    /// Either way the job is handed over once and run once, and
    /// ThreadSanitizer sees no race (`make test-tsan`).
    @Test func handlerResumedByAnotherThreadDuringTheTrapRunsOnce() async throws {
        let awaitedElsewhere = "error: hypercall 0x1338 on vCPU 0, region 0x100000: the handler awaited something other than a guest operation; handlers may only await the guest"
        for round in 0..<50 {
            let log = LogRecorder()
            let engine = makeEngine(log: log)
            let (guest, vcpu) = bootedGuest(engine)
            guest.map(0x4000, count: 4096)
            guest.store([0x5a], at: 0x4000)
            let (reports, report) = AsyncStream<String>.makeStream()
            let resumed = Counter()
            try engine.attach(.syscallEnter) { g in
                defer { report.finish() }
                await Task.detached {}.value
                resumed.add()
                do {
                    let value = try await g.read(UInt8.self, at: 0x4000)
                    report.yield("read \(value)")
                    return 7
                } catch {
                    report.yield("\(error)")
                    return 1
                }
            }
            let result = guest.portal(engine, vcpu: vcpu, number: event)
            // The stream ends when the handler returns: a job run twice
            // would show as a second resume.
            var reportedAll: [String] = []
            for await line in reports { reportedAll.append(line) }
            #expect(resumed.value == 1, "round \(round)")
            #expect(reportedAll.count == 1, "round \(round): \(reportedAll)")
            let reported = reportedAll.first
            if result == 7 {
                #expect(reported == "read 90", "round \(round)")
                #expect(log.matching("error") == [], "round \(round)")
            } else {
                #expect(result == UInt64(event), "round \(round)")
                #expect(reported == "the conversation has ended", "round \(round)")
                #expect(log.matching("error") == [awaitedElsewhere], "round \(round)")
            }
            #expect(engine.liveConversations == 0)
        }
    }

    /// `async let` over guest operations: `Guest` is not `Sendable`, so
    /// this only compiles through an unchecked box. The second task's job is
    /// not dropped: the conversation fails with `concurrentOperation`, and
    /// every task (both children, the handler) runs to its end.
    @Test func concurrentGuestOperationsAreRefusedAndNoTaskIsLeft() async throws {
        struct UncheckedGuest: @unchecked Sendable { let guest: Guest }
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        let ended = Lock<[String]>([])
        try engine.attach(.syscallEnter) { g in
            let box = UncheckedGuest(guest: g)
            async let first = box.guest.read(UInt8.self, at: 0x4000)
            async let second = box.guest.read(UInt8.self, at: 0x4001)
            do {
                _ = try await (first, second)
                ended.withLock { $0.append("both read") }
            } catch {
                ended.withLock { $0.append("\(error)") }
            }
            return 1
        }
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == UInt64(event))
        #expect(log.matching("error") == [
            "error: hypercall 0x1338 on vCPU 0, region 0x100000: the work failed: a guest operation was started while another one was waiting for the guest",
        ])
        #expect(engine.liveConversations == 0)
        // The handler finished before the hypercall returned: nothing waits.
        #expect(ended.withLock { $0 } == ["a guest operation was started while another one was waiting for the guest"])
    }

    @Test func conversationTheGuestNeverComesBackToIsReclaimed() throws {
        let (engine, guest, vcpu, log) = limitedEngine(maxConversations: 3, staleAfter: 4)
        let cancelled = Lock<[String]>([])
        try engine.attach(.syscallEnter) { g in
            do {
                return UInt64(try await g.read(UInt8.self, at: 0x4000)) + g.call.arg1
            } catch {
                cancelled.withLock { $0.append("\(g.call.arg1): \(error)") }
                throw error
            }
        }
        var forgotten = guest.startPortal(engine, vcpu: vcpu, number: event, 100)
        _ = forgotten.trap(engine, guest: guest)
        // The guest thread is gone; others keep conversing.
        for round in 0..<8 as Range<UInt64> {
            #expect(guest.portal(engine, vcpu: vcpu, number: event, round) == round)
        }
        #expect(engine.liveConversations == 0)
        #expect(cancelled.withLock { $0 } == [
            "100: the guest never came back to this conversation (5 conversations started waiting since its last trap, stale_after); reclaimed",
        ])
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: the guest never came back to this conversation (5 conversations started waiting since its last trap, stale_after); reclaimed",
        ])
    }

    @Test func regionRegistrationOutOfRangeIsRefused() {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let guest = MockGuest()
        let vcpu = engine.makeVCPU(index: 1)
        for size: UInt64 in [0, 2_000_000] {
            _ = engine.hypercall(Hypercall(number: 0xbebe_bebe, arg1: size, vcpu: 1), vcpu: vcpu, memory: guest.memory)
        }
        _ = engine.hypercall(Hypercall(number: 0xbebe_bebe, arg1: 16360, vcpu: 1), vcpu: vcpu, memory: guest.memory)
        #expect(engine.regionSize == 16360)
        #expect(log.matching("error") == [
            "error: hypercall 0xbebebebe on vCPU 1: region size 0 refused, expected 1 to 1048576 payload bytes; keeping 4072",
            "error: hypercall 0xbebebebe on vCPU 1: region size 2000000 refused, expected 1 to 1048576 payload bytes; keeping 4072",
        ])
    }

    @Test func shutdownEndsWaitingConversations() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        let cancelled = Lock<String>("")
        try engine.attach(.syscallEnter) { g in
            do {
                return UInt64(try await g.read(UInt8.self, at: 0x4000))
            } catch {
                cancelled.withLock { $0 = "\(error)" }
                throw error
            }
        }
        var loop = guest.startPortal(engine, vcpu: vcpu, number: event)
        _ = loop.trap(engine, guest: guest)
        engine.shutdown()
        #expect(cancelled.withLock { $0 } == "the plugin was unloaded while the conversation waited for the guest; ended")
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: the plugin was unloaded while the conversation waited for the guest; ended",
        ])
    }
}
