@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Copies `count` guest bytes from `source` to `destination` the way a C
/// step function may: READ the source, then WRITE whatever came back, with
/// the answer's own payload as the command's payload. `between` runs after
/// the answer arrived and before the WRITE is encoded (another vCPU acting).
private final class CopyThroughAnswer: ConversationWork, @unchecked Sendable {
    let source: UInt64
    let destination: UInt64
    let count: Int64
    let between: () -> Void
    private var wrote = false

    init(source: UInt64, destination: UInt64, count: Int64, between: @escaping () -> Void) {
        self.source = source
        self.destination = destination
        self.count = count
        self.between = between
    }

    func start(_ conversation: Conversation) -> WorkStep {
        .command(PortalCommand(op: 1, address: source, size: count))
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        if wrote { return .finished(response.code == .writeOK ? 1 : 0) }
        wrote = true
        between()
        return .command(PortalCommand(op: 2, address: destination, size: count,
                                      payload: .borrowed(response.payload)))
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {}
}

/// Three one-byte READs at 0x4000, 0x4001 and 0x4002, then their sum as the
/// result; counts its own deinitialisation, so a test sees what still holds
/// ended conversations.
private final class SumOfThreeReadsWork: ConversationWork, @unchecked Sendable {
    let released: Counter
    private var sum: UInt64 = 0
    private var reads: UInt64 = 0

    init(released: Counter) { self.released = released }
    deinit { released.add() }

    func start(_ conversation: Conversation) -> WorkStep {
        .command(PortalCommand(op: 1, address: 0x4000, size: 1))
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        sum += UInt64(response.payload.first ?? 0)
        reads += 1
        return reads == 3 ? .finished(sum) : .command(PortalCommand(op: 1, address: 0x4000 + reads, size: 1))
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {}
}

/// Serialized: two of these tests measure or use a lot of memory
/// (the largest op table, the resident size after a million re-attaches)
/// and must not overlap each other.
@Suite("Robustness", .serialized)
struct RobustnessTests {
    /// Issue 8, item 1: a larger region registered by another vCPU between an
    /// answer and the next command must not free the buffer the answer lies
    /// in before the command is encoded (AddressSanitizer: heap-use-after-free;
    /// plain builds: host heap bytes written into the guest).
    @Test func commandCopiedFromTheAnswerSurvivesALargerRegionRegistration() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        let other = engine.makeVCPU(index: 1)
        guest.map(0x4000, count: 4096)
        let pattern = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        guest.store(pattern, at: 0x4000)
        // Unowned: the engine holds this factory.
        try engine.attach(.syscallEnter, WorkFactory { [unowned engine] _ in
            CopyThroughAnswer(source: 0x4000, destination: 0x4800, count: 64) {
                _ = engine.hypercall(Hypercall(number: 0xbebe_bebe, arg1: 8168, vcpu: 1), vcpu: other,
                                     memory: guest.memory)
            }
        })
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 1)
        #expect(engine.regionSize == 8168)
        #expect(guest.bytes(at: 0x4800, count: 64) == pattern)
        #expect(log.matching("error").isEmpty)
    }

    /// Issue 8, item 4: a table written with CRLF line ends parses as the
    /// same table with LF ones (a `\r\n` is one Character, so splitting
    /// the String at "\n" never split it).
    @Test func opTableWithCRLFLineEnds() throws {
        let table = try OpTable(parsing: "# ops\r\nHYPER_OP_NONE = 0\r\nREAD\r\nwrite = 2\r\n\r\nREAD_STR\r\nMAX = 4\r\n")
        #expect(table.names == ["READ", "WRITE", "READ_STR"])
        #expect(table.max == 4)
        #expect(throws: OpTableError(line: 2, message: "READ is listed twice")) {
            try OpTable(parsing: "READ\r\nread\r\n")
        }
    }

    /// Issue 8, item 3: the largest table `ops=` accepts (1 MiB of the
    /// shortest distinct names, about 217,000 of them) loads through the
    /// argument parser. Duplicate checks were a linear search per line:
    /// 16 minutes in a debug build; the time limit only stops a hang (the
    /// linear parser takes seconds, over a minute under ThreadSanitizer on a
    /// loaded machine, so the limit is generous).
    @Test(.timeLimit(.minutes(5))) func largestLegalOpTableLoads() throws {
        let firsts = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ_".utf8)
        let rests = firsts + Array("0123456789".utf8)
        var text: [UInt8] = []
        var count = 0
        func add(_ name: [UInt8]) -> Bool {
            guard text.count + name.count + 1 <= 1 << 20 else { return false }
            if name == Array("MAX".utf8) || name == Array("NONE".utf8) { return true }
            text += name
            text.append(UInt8(ascii: "\n"))
            count += 1
            return true
        }
        var names: [[UInt8]] = firsts.map { [$0] }
        while !names.isEmpty {
            var longer: [[UInt8]] = []
            for name in names {
                guard add(name) else { break }
                for next in rests { longer.append(name + [next]) }
            }
            names = text.count + 6 <= 1 << 20 ? longer : []
        }
        #expect(text.count > (1 << 20) - 6 && text.count <= 1 << 20)
        let path = "/tmp/portal-unit-largest-ops-\(getpid()).txt"
        let file = try #require(fopen(path, "w"))
        #expect(fwrite(text, 1, text.count, file) == text.count)
        fclose(file)
        defer { unlink(path) }
        let configuration = try PortalConfiguration.parse(["ops=\(path)"]) { try PortalConfiguration.readTextFile($0) }
        #expect(configuration.ops.names.count == count)
        #expect(count > 200_000)
        #expect(configuration.ops.max == UInt32(count + 1))
        #expect(configuration.ops.names.last == String(decoding: text.dropLast().split(separator: UInt8(ascii: "\n")).last!, as: UTF8.self))
    }

    /// Issue 8, item 6: a guest that abandoned `max_conversations`
    /// conversations (trapped once, never came back, pages kept) does not
    /// lock out the next ones: the first newcomer reclaims the oldest
    /// abandoned one, and each finished conversation leaves room again.
    @Test func abandonedConversationsDoNotDenyService() throws {
        let (engine, guest, vcpu, log) = limitedEngine(maxConversations: 32, regionPages: 40)
        guest.store([7], at: 0x4000)
        try engine.attach(.syscallEnter) { g in UInt64(try await g.read(UInt8.self, at: 0x4000)) + g.call.arg1 }
        for _ in 0..<32 {
            var abandoned = guest.startPortal(engine, vcpu: vcpu, number: event, 1000)
            let waits = abandoned.trap(engine, guest: guest)
            #expect(waits)
        }
        #expect(engine.liveConversations == 32)
        let results = (0..<200 as Range<UInt64>).map { guest.portal(engine, vcpu: vcpu, number: event, $0) }
        #expect(results == (0..<200).map { $0 + 7 })
        #expect(engine.liveConversations == 31)
        #expect(log.matching("warn") == [
            "warn: hypercall 0x1338 on vCPU 0, region 0x100000: 32 conversations were waiting (max_conversations) and the guest had not come back to this one for the longest (32 conversations started waiting since its last trap); reclaimed to make room",
        ])
        #expect(log.matching("error").isEmpty)
        // The abandoned handlers are still suspended in their reads.
        engine.shutdown()
    }

    /// A full table makes room by reclaiming the conversation the guest
    /// neglected longest (issue 8, item 6), by last trap, not by start: the
    /// guest that comes back to it later gets NONE for its stray answer, and
    /// nobody is refused.
    @Test func fullTableReclaimsByLastTrapNotByStart() throws {
        let (engine, guest, vcpu, log) = limitedEngine(maxConversations: 3, regionPages: 8)
        try engine.attach(.syscallEnter) { g in
            for _ in 0..<4 { _ = try await g.read(UInt8.self, at: 0x4000) }
            return g.call.arg1
        }
        var loops = (0..<3 as Range<UInt64>).map { guest.startPortal(engine, vcpu: vcpu, number: event, $0) }
        for index in loops.indices { _ = loops[index].trap(engine, guest: guest) }
        // The first comes back twice more; the second is now idle longest.
        _ = loops[0].trap(engine, guest: guest)
        _ = loops[2].trap(engine, guest: guest)
        _ = loops[0].trap(engine, guest: guest)
        var fourth = guest.startPortal(engine, vcpu: vcpu, number: event, 3)
        let fourthWaits = fourth.trap(engine, guest: guest)
        #expect(fourthWaits)
        #expect(engine.liveConversations == 3)
        let reclaimed = "warn: hypercall 0x1338 on vCPU 0, region 0x102000: 3 conversations were waiting (max_conversations) and the guest had not come back to this one for the longest (2 conversations started waiting since its last trap); reclaimed to make room"
        #expect(log.matching("warn") == [reclaimed])
        while fourth.trap(engine, guest: guest) {}
        for index in loops.indices { while loops[index].trap(engine, guest: guest) {} }
        #expect(loops.map(\.result) == [0, UInt64(event), 2])
        #expect(fourth.result == 3)
        #expect(log.matching("warn") == [
            reclaimed,
            "warn: hypercall 0x1338 on vCPU 0, region 0x102000: the guest answered READ_OK but no conversation is live on this region; its loop was ended",
        ])
        #expect(engine.liveConversations == 0)
    }

    /// Issue 8, item 9: lines a guest causes are rate-limited per kind and
    /// hypercall number: 10 a second, then one line saying the rest are
    /// counted; the count is reported with the next line after the second,
    /// and at unload. Other kinds and numbers are not held back.
    @Test func linesTheGuestCausesAreRateLimited() throws {
        let log = LogRecorder()
        let now = Atomic<UInt64>(5_000_000_000)
        let engine = PortalEngine(configuration: PortalConfiguration(), layout: .little64,
                                  logger: log.logger(level: .warn),
                                  logClock: { now.load(ordering: .relaxed) })
        let (guest, vcpu) = bootedGuest(engine)
        try engine.attach(.syscallEnter) { _ in 0 }
        try engine.attach(.syscallReturn) { _ in 0 }
        func strayAnswers(_ count: Int, number: UInt32 = event) {
            for _ in 0..<count {
                _ = engine.hypercall(Hypercall(number: UInt64(number), arg3: 0x10_0000,
                                               arg4: UInt64(ResponseCode.readOK.rawValue)),
                                     vcpu: vcpu, memory: guest.memory)
            }
        }
        let stray = "warn: hypercall 0x1338 on vCPU 0, region 0x100000: the guest answered READ_OK but no conversation is live on this region; its loop was ended"
        strayAnswers(50)
        strayAnswers(1, number: HypercallNumber.syscallReturn.rawValue)
        #expect(log.all == Array(repeating: stray, count: 10) + [
            "warn: hypercall 0x1338: more than 10 'stray answer' lines this second; further ones are counted, not printed",
            "warn: hypercall 0x1339 on vCPU 0, region 0x100000: the guest answered READ_OK but no conversation is live on this region; its loop was ended",
        ])
        now.add(999_999_999, ordering: .relaxed)
        strayAnswers(1)
        #expect(log.all.count == 12)
        now.add(1, ordering: .relaxed)
        strayAnswers(12)
        #expect(Array(log.all.dropFirst(12)) == [
            "warn: hypercall 0x1338: 41 more 'stray answer' lines were suppressed (at most 10 a second for each kind and hypercall)",
        ] + Array(repeating: stray, count: 10) + [
            "warn: hypercall 0x1338: more than 10 'stray answer' lines this second; further ones are counted, not printed",
        ])
        engine.shutdown()
        #expect(log.all.last == "warn: hypercall 0x1338: 2 more 'stray answer' lines were suppressed before unload (at most 10 a second for each kind and hypercall)")
    }

    /// Issue 8, item 8: a conversation whose guest thread moves to another
    /// vCPU before each trap (0, 1, 2, then 0 again) is served to its end,
    /// and is not kept alive by any vCPU's cache once it ended (once 4,096
    /// per vCPU: 91 MB after 262,144 conversations on 64 vCPUs).
    @Test func conversationsThatMigratedAreReleasedWhenTheyEnd() throws {
        let engine = makeEngine()
        let (guest, first) = bootedGuest(engine, regionPages: 64)
        let vcpus = [first, engine.makeVCPU(index: 1), engine.makeVCPU(index: 2)]
        guest.map(0x4000, count: 4096)
        guest.store([2, 13, 27], at: 0x4000)
        let released = Counter()
        try engine.attach(.syscallEnter, WorkFactory { _ in SumOfThreeReadsWork(released: released) })
        for _ in 0..<200 {
            var loop = guest.startPortal(engine, vcpu: vcpus[0], number: event)
            var moves = 0
            while loop.trap(engine, guest: guest) {
                moves += 1
                var moved = PortalLoop(vcpu: vcpus[moves % 3], number: event, arg1: 0, arg2: 0, region: loop.region)
                moved.lastAnswer = loop.lastAnswer
                loop = moved
            }
            #expect(loop.result == 42)
            #expect(moves == 3)
        }
        #expect(engine.liveConversations == 0)
        #expect(released.value == 200)
    }

    /// Issue 8, item 7: re-attaching work keeps no snapshot per attach (once
    /// 168 bytes each until unload: 1,000,000 re-attaches held 168 MB). The
    /// resident size may move with tests running in parallel, hence the margin.
    @Test func reattachingKeepsNoSnapshots() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        try engine.attach(.syscallEnter) { _ in 1 }
        let before = residentBytes()
        for round in 0..<1_000_000 {
            try engine.attach(.syscallEnter) { _ in UInt64(round) }
        }
        let grown = residentBytes() - before
        #expect(grown < 64 << 20, "1,000,000 re-attaches kept \(grown) bytes")
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 999_999)
        #expect(engine.handlerTablesAlive == 1)
    }

    /// Thousands of numbers attached: each finds its own work; detached
    /// ones are not the engine's any more; the tables replaced on the way
    /// are all freed.
    @Test func manyAttachedNumbersEachFindTheirWork() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        let numbers = (0..<4000 as Range<UInt32>).map { 0x10_0000 &+ $0 &* 0x1_0001 }
        for number in numbers { try engine.attach(HypercallNumber(rawValue: number)) { _ in UInt64(number) } }
        #expect(numbers.allSatisfy { guest.portal(engine, vcpu: vcpu, number: $0) == UInt64($0) })
        for number in numbers where number % 2 == 0 { engine.detach(HypercallNumber(rawValue: number)) }
        #expect(numbers.allSatisfy { engine.serves(UInt64($0), vcpu: vcpu) == ($0 % 2 == 1) })
        #expect(numbers.filter { $0 % 2 == 1 }.allSatisfy { guest.portal(engine, vcpu: vcpu, number: $0) == UInt64($0) })
        #expect(engine.handlerTablesAlive == 1)
    }

    /// vCPU threads look work up while another thread keeps replacing it:
    /// every conversation runs one of the attached versions, and (under
    /// AddressSanitizer and ThreadSanitizer in `make test`) no replaced
    /// table is freed under a reader.
    @Test func lookUpsWhileWorkIsReplaced() throws {
        let engine = makeEngine()
        let guest = MockGuest(regionPages: 64)
        let vcpus = (0..<4).map { engine.makeVCPU(index: $0) }
        guest.registerRegion(engine, vcpu: vcpus[0])
        try engine.attach(.syscallEnter) { _ in 7 }
        let wrong = Counter()
        runOnThreads(5) { thread in
            if thread == 4 {
                for _ in 0..<3000 {
                    do {
                        try engine.attach(.syscallEnter) { _ in 7 }
                        try engine.attach(.syscallReturn) { _ in 8 }
                    } catch {
                        wrong.add()
                    }
                    engine.detach(.syscallReturn)
                }
                return
            }
            for _ in 0..<1500 where guest.portal(engine, vcpu: vcpus[thread], number: event) != 7 { wrong.add() }
        }
        #expect(wrong.value == 0)
        #expect(engine.handlerTablesAlive == 1)
    }

    /// Issue 8, item 10 (what the README says): detaching a number stops new
    /// conversations on it, and one already waiting is served to completion
    /// by the work it started with.
    @Test func detachedNumbersWaitingConversationIsServedToCompletion() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        guest.store([5], at: 0x4000)
        try engine.attach(.syscallEnter) { g in UInt64(try await g.read(UInt8.self, at: 0x4000)) + 100 }
        var waiting = guest.startPortal(engine, vcpu: vcpu, number: event)
        let waits = waiting.trap(engine, guest: guest)
        #expect(waits)
        #expect(engine.detach(.syscallEnter))
        while waiting.trap(engine, guest: guest) {}
        #expect(waiting.result == 105)
        let fresh = engine.hypercall(Hypercall(number: UInt64(event), arg3: 0x10_2000), vcpu: vcpu, memory: guest.memory)
        #expect(fresh == .notMine)
        #expect(log.matching("warn").isEmpty && log.matching("error").isEmpty)
    }
}

/// The process's resident set size, from /proc/self/statm.
private func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0
    var resident = 0
    guard withUnsafeMutablePointer(to: &size, { sizePointer in
        withUnsafeMutablePointer(to: &resident) { residentPointer in
            withVaList([sizePointer, residentPointer]) { vfscanf(file, "%ld %ld", $0) }
        }
    }) == 2 else { return 0 }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}
