@testable import PortalEngine
import Synchronization
import Testing

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

@Suite("Robustness")
struct RobustnessTests {
    /// Issue 8, item 1: a larger region registered by another vCPU between an
    /// answer and the next command must not free the buffer the answer lies
    /// in before the command is encoded (AddressSanitizer: heap-use-after-free;
    /// plain builds: host heap bytes written into the guest).
    @Test func commandCopiedFromTheAnswerSurvivesALargerRegionRegistration() {
        let log = LogRecorder()
        let engine = makeEngine(log: log)
        let (guest, vcpu) = bootedGuest(engine)
        let other = engine.makeVCPU(index: 1)
        guest.map(0x4000, count: 4096)
        let pattern = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        guest.store(pattern, at: 0x4000)
        engine.attach(.syscallEnter, WorkFactory { _ in
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
}
