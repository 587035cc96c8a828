@testable import PortalEngine
import PortalTestSupport
import Synchronization
import Testing

/// The public API's errors: extensible structs with a code, thrown rather
/// than logged, with every field a caller may branch on.
@Suite("API")
struct APITests {
    /// Attaching to a number the protocol uses throws; the engine logs
    /// nothing (the caller decides), and the number stays the engine's.
    @Test func attachingToAProtocolNumberThrows() throws {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        for number in [HypercallNumber.registerMemRegion, .enablePortalInterrupt, .portalInterrupt] {
            let error = #expect(throws: PortalError.self) { try engine.attach(number) { _ in 1 } }
            #expect(error?.code == .reservedHypercall)
            #expect(error?.code.name == "reserved-hypercall")
            #expect(error?.description == "cannot attach work to hypercall \(number): the portal protocol uses it")
        }
        #expect(log.all.isEmpty)
        try engine.attach(.syscallEnter) { _ in 5 }
        let (guest, vcpu) = bootedGuest(engine)
        #expect(guest.portal(engine, vcpu: vcpu, number: event) == 5)
    }

    /// A refused write, an op the table lacks and a number query answered
    /// with something else each have their own code.
    @Test func writeOpAndNumberFailuresHaveTheirOwnCodes() throws {
        var configuration = PortalConfiguration()
        configuration.ops = OpTable(names: ["READ", "WRITE"])
        let engine = makeEngine(configuration)
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        let errors = Lock<[GuestError]>([])
        try engine.attach(.syscallEnter) { g in
            for attempt in 0..<3 {
                do {
                    switch attempt {
                    case 0: try await g.write([1, 2, 3], at: 0x9000)
                    case 1: _ = try await g.readTime()
                    default: _ = try await g.readNumber(op: g.ops.read, address: 0x4000, size: 1)
                    }
                } catch let error as GuestError {
                    errors.withLock { $0.append(error) }
                }
            }
            return 0
        }
        _ = guest.portal(engine, vcpu: vcpu, number: event)
        let seen = errors.withLock { $0 }
        try #require(seen.count == 3)
        #expect(seen[0].code == .writeFailed)
        #expect(seen[0].bytesDone == 0)
        #expect(seen[0].count == 3)
        #expect(seen[0].response == .writeFail)
        #expect(seen[0].description == "writing 3 bytes at 0x9000 stopped after 0 bytes (WRITE_FAIL)")
        #expect(seen[1].code == .opMissing)
        #expect(seen[1].opName == "READ_TIME")
        #expect(seen[1].description == "the op table has no op READ_TIME")
        #expect(seen[2].code == .numberFailed)
        #expect(seen[2].response == .readOK)
        #expect(seen[2].description == "op 1 answered READ_OK, expected READ_NUM")
    }

    /// Step work sees why its conversation ended as a code.
    @Test func cancelledWorkSeesTheCode() throws {
        let engine = makeEngine()
        let (guest, vcpu) = bootedGuest(engine)
        guest.map(0x4000, count: 4096)
        let reasons = Lock<[PortalError]>([])
        try engine.attach(.syscallEnter, WorkFactory { _ in RecordingWork(reasons: reasons) })
        let region = guest.freshRegion()
        var first = PortalLoop(vcpu: vcpu, number: event, arg1: 0, arg2: 0, region: region)
        let firstWaits = first.trap(engine, guest: guest)
        #expect(firstWaits)
        // The guest starts anew on the same region: the first one is abandoned.
        var second = PortalLoop(vcpu: vcpu, number: event, arg1: 0, arg2: 0, region: region)
        let secondWaits = second.trap(engine, guest: guest)
        #expect(secondWaits)
        let reason = try #require(reasons.withLock { $0.first })
        #expect(reason.code == .abandoned)
        #expect(reason.code.name == "abandoned")
        #expect(reason.description == "the guest started a new conversation on this region; the unfinished one was dropped")
        engine.shutdown()
        #expect(reasons.withLock { $0.map(\.code) } == [.abandoned, .unloaded])
    }
}

/// Reads one byte and waits forever; records why it was cancelled.
private final class RecordingWork: ConversationWork {
    let reasons: Lock<[PortalError]>
    init(reasons: Lock<[PortalError]>) { self.reasons = reasons }
    func start(_ conversation: Conversation) -> WorkStep {
        .command(PortalCommand(op: conversation.ops.read, address: 0x4000, size: 1))
    }
    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        .command(PortalCommand(op: conversation.ops.read, address: 0x4000, size: 1))
    }
    func cancel(_ conversation: Conversation, because reason: PortalError) {
        reasons.withLock { $0.append(reason) }
    }
}
