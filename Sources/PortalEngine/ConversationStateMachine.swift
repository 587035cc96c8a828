/// What a conversation's work does next.
///
/// Noncopyable: each step is handed over once, from the work to the engine,
/// and consumed there. As a copyable enum it was destroyed through its
/// value witness on every round trip: 30 of a C round trip's instructions,
/// 280 of a Swift one's (callgrind, `make bench`).
public enum WorkStep: ~Copyable, @unchecked Sendable {
    /// Send this command and wait for the guest's response.
    case command(PortalCommand)
    /// Done: end the conversation; the value goes to the return register.
    case finished(UInt64)
    /// Give up: end the conversation and report why.
    case failed(any Error)
}

/// The op numbers the protocol side needs, resolved once from the op table
/// so that a round trip handles plain integers.
struct OpNumbers {
    let max: UInt32
    let read: UInt32
    let write: UInt32

    init(_ table: OpTable) {
        max = table.max
        read = table.read
        write = table.write
    }
}

/// The protocol side of one conversation: which answer it waits for, and
/// what the engine must do with each event. It does no I/O: it returns
/// actions, and the engine reads and writes the region.
struct ConversationStateMachine {
    enum State {
        /// The work is deciding its next step.
        case working
        /// A command was written; the guest owes an answer. `payloadHint` is
        /// how much payload a READ_OK/READ_PARTIAL answer can carry, so the
        /// answer is read with one guest access.
        case awaitingAnswer(payloadHint: Int)
        case ended
    }

    enum AnswerAction {
        /// Read the header and up to `payloadHint` payload bytes, then
        /// decode an answer with `code`.
        case readAnswer(ResponseCode, payloadHint: Int)
        /// Read the header only (READ_NUM carries its value in `size`).
        case readHeader(ResponseCode)
        /// The code is all there is (WRITE_OK, WRITE_FAIL, READ_FAIL, NONE).
        case deliver(PortalResponse)
        /// arg4 = 0: the guest started a new conversation on this region.
        case restart
        case fail(PortalError)
    }

    private(set) var state: State = .working


    /// The work wants to send a command with `op` and `size`: nil means
    /// write it and wait for the answer, an error means end the conversation
    /// (NONE, dropped, reported). The engine keeps the command itself: only
    /// what the protocol needs passes here, so a round trip copies no command.
    @inline(__always)
    mutating func commandSent(op: UInt32, size: Int64, ops: OpNumbers, regionSize: Int) -> PortalError? {
        precondition(isWorking, "a command arrived while the conversation was \(state)")
        guard op >= 1 && op < ops.max else {
            state = .ended
            return .invalidOp(op, max: ops.max)
        }
        let payloadHint: Int
        switch op {
        case ops.read: payloadHint = Int(min(max(size, 0), Int64(regionSize)))
        case ops.write: payloadHint = 0
        default: payloadHint = regionSize
        }
        state = .awaitingAnswer(payloadHint: payloadHint)
        return nil
    }

    /// The work is done: end the conversation.
    mutating func workFinished() {
        precondition(isWorking, "the work finished while the conversation was \(state)")
        state = .ended
    }

    /// The work gave up: end the conversation with this error.
    mutating func workFailed(_ error: any Error) -> PortalError {
        precondition(isWorking, "the work failed while the conversation was \(state)")
        state = .ended
        return error as? PortalError ?? .workFailed(String(describing: error))
    }

    private var isWorking: Bool { if case .working = state { true } else { false } }

    /// The guest trapped again on this conversation's region; `answer` is arg4.
    @inline(__always)
    mutating func guestAnswered(_ answer: UInt64) -> AnswerAction {
        guard case .awaitingAnswer(let payloadHint) = state else {
            preconditionFailure("an answer arrived while the conversation was \(state)")
        }
        // A 32-bit int in a 64-bit register may arrive sign-extended.
        let low = UInt32(truncatingIfNeeded: answer)
        if low == 0 { return .restart }
        let code = ResponseCode(rawValue: low)
        guard code.isValid, answer >> 32 == 0 || answer >> 32 == 0xffff_ffff else {
            state = .ended
            return .fail(.invalidResponse(answer))
        }
        state = .working
        switch code {
        case .readOK, .readPartial: return .readAnswer(code, payloadHint: payloadHint)
        case .readNumber: return .readHeader(code)
        default: return .deliver(PortalResponse(code: code))
        }
    }

    /// The answer's header was read: checks that it fits the region.
    mutating func answerRead(_ code: ResponseCode, header: RegionHeader,
                             regionSize: Int) -> PortalError? {
        if code.carriesPayload && header.size > UInt64(regionSize) {
            state = .ended
            return .answerTooLarge(code, size: header.size, regionSize: regionSize)
        }
        return nil
    }

    /// The engine ended the conversation from outside (I/O failure, unload, reclaim).
    mutating func end() { state = .ended }
}
