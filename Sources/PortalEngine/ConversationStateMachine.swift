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

/// The whole lifecycle of one conversation, and the protocol's policy on
/// each event: whether the conversation enters the waiting table, whether
/// NONE is written to end the guest's loop, what a stray answer or a restart
/// does. It does no I/O: every event returns an `Action`, and the engine
/// reads and writes the region, enters and leaves the waiting table, logs,
/// and cancels the work as the action says.
///
/// Only the cross-thread claim (which vCPU may deliver the next event) lives
/// outside, in the conversation's `WaitingTicket`: whoever holds the claim is
/// the only one sending events, so the machine needs no synchronisation.
///
/// An event the current state does not take is refused: the conversation
/// ends (as the state allows: NONE and leaving the table only if it waits)
/// with a failure naming the event and the state. The engine never sends
/// one; the refusal keeps a mistake in the engine from trapping the emulator.
struct ConversationStateMachine {
    enum State: Equatable {
        /// Made on a first trap (arg4 = 0) and not yet waiting: its work
        /// decides the first step. Nothing is written to the region if it ends now.
        case starting
        /// Its first command was accepted: the engine enters it in the
        /// waiting table (`admitted`), or the table refuses it.
        case admitting(payloadHint: Int)
        /// Waiting in the table; its work decides the next step.
        case working
        /// Waiting in the table; a command was written and the guest owes an
        /// answer. `payloadHint` is how much payload a READ_OK/READ_PARTIAL
        /// answer can carry, so the answer is read with one guest access.
        case awaitingAnswer(payloadHint: Int)
        /// Waiting in the table; the engine reads the answer `code` announced.
        case readingAnswer(ResponseCode)
        case ended
    }

    /// How the engine ends a conversation; why is the machine's `failure`.
    ///
    /// Plain flags, so that an `Action` is trivial: with the failure in it,
    /// every action the round trip handles was destroyed through an
    /// outlined consume (67 more instructions per C round trip, callgrind).
    struct Ending: Equatable {
        /// The level of the line logged for the machine's `failure`.
        var level: LogLevel
        /// Write NONE into the region so the guest leaves its loop: only
        /// over a command of ours, so never on a first trap (the header is
        /// the guest's), nor after the guest took the page back or it could
        /// not be written.
        var writesNone: Bool
        /// Take it out of the waiting table (it is in it).
        var leavesTable: Bool
        /// Tell the work it was cut short (`ConversationWork.cancel`): every
        /// failure, unless the conversation had ended already.
        var cancelsWork: Bool

        init(level: LogLevel, writesNone: Bool, leavesTable: Bool, cancelsWork: Bool) {
            self.level = level
            self.writesNone = writesNone
            self.leavesTable = leavesTable
            self.cancelsWork = cancelsWork
        }
    }

    /// What the engine does after an event.
    enum Action: Equatable {
        /// Enter the conversation in the waiting table, then send `admitted`
        /// or `admissionRefused`.
        case admit
        /// Encode and write the command; the conversation waits for the answer.
        case writeCommand
        /// Read the header and up to `payloadHint` payload bytes, then send
        /// `answerRead`.
        case readAnswer(ResponseCode, payloadHint: Int)
        /// Read the header only (READ_NUM carries its value in `size`), then
        /// send `answerRead`.
        case readHeader(ResponseCode)
        /// Hand the work the answer: the code alone when nothing was read,
        /// else the answer as read.
        case resume(ResponseCode)
        /// End this conversation, then start a new one on its region (the
        /// guest trapped with arg4 = 0: it gave this one up).
        case restart(Ending)
        /// End the conversation.
        case end(Ending)
        /// The event is not one this state takes; end as `Ending` says.
        case refuse(Ending)
    }

    /// What a trap on a region without a waiting conversation starts.
    enum FirstTrapAction: Equatable {
        /// arg4 = 0: start a conversation.
        case start
        /// The guest is mid-loop but nothing waits on this region (the
        /// conversation was ended, or never started): write NONE to end the
        /// guest's loop, and log `PortalError` at warn.
        case endGuestLoop(PortalError)
    }

    private(set) var state: State = .starting
    /// Why the conversation ended; nil while it runs and when its work finished.
    private(set) var failure: PortalError?

    /// Whether the conversation is in the engine's waiting table.
    var isWaiting: Bool {
        switch state {
        case .working, .awaitingAnswer, .readingAnswer: true
        case .starting, .admitting, .ended: false
        }
    }

    /// A trap found no conversation waiting on its region.
    /// - Parameter answer: arg4.
    /// - Returns: whether a conversation starts, or the guest's loop ends.
    @inline(__always)
    static func trapWithoutConversation(answer: UInt64) -> FirstTrapAction {
        let low = UInt32(truncatingIfNeeded: answer)
        return low == 0 ? .start : .endGuestLoop(.strayAnswer(ResponseCode(rawValue: low)))
    }

    /// The work wants to send a command with `op` and `size`. The engine
    /// keeps the command itself: only what the protocol needs passes here,
    /// so a round trip copies no command.
    /// - Returns: `.admit` on the first command, `.writeCommand` on later
    ///   ones, `.end` for an op the guest cannot run.
    @inline(__always)
    mutating func commandSent(op: UInt32, size: Int64, ops: OpNumbers, regionSize: Int) -> Action {
        let isFirst: Bool
        switch state {
        case .starting: isFirst = true
        case .working: isFirst = false
        default: return refuse("a command")
        }
        guard op >= 1 && op < ops.max else {
            return end(.invalidOp(op, max: ops.max), level: .error, writesNone: !isFirst)
        }
        let payloadHint: Int
        switch op {
        case ops.read: payloadHint = Int(min(max(size, 0), Int64(regionSize)))
        case ops.write: payloadHint = 0
        default: payloadHint = regionSize
        }
        if isFirst {
            state = .admitting(payloadHint: payloadHint)
            return .admit
        }
        state = .awaitingAnswer(payloadHint: payloadHint)
        return .writeCommand
    }

    /// The waiting table took the conversation in.
    /// - Returns: `.writeCommand`.
    mutating func admitted() -> Action {
        guard case .admitting(let payloadHint) = state else { return refuse("an admission") }
        state = .awaitingAnswer(payloadHint: payloadHint)
        return .writeCommand
    }

    /// The waiting table refused the conversation (`error` says why).
    /// - Returns: `.end`: it never waited, so nothing is written.
    mutating func admissionRefused(_ error: PortalError) -> Action {
        guard case .admitting = state else { return refuse("a refused admission") }
        return end(error, level: .error, writesNone: false)
    }

    /// The command could not be written to the region.
    /// - Returns: `.end`, without NONE (the region is not writable).
    mutating func commandUnwritable(bytes: Int) -> Action {
        guard case .awaitingAnswer = state else { return refuse("an unwritable command") }
        return end(.regionUnwritable(bytes: bytes), level: .error, writesNone: false)
    }

    /// The work is done.
    /// - Returns: `.end` with no failure; NONE only if it waited.
    mutating func workFinished() -> Action {
        switch state {
        case .starting, .working: return end(nil, level: .debug, writesNone: isWaiting)
        default: return refuse("the work's end")
        }
    }

    /// The work gave up with `error`.
    /// - Returns: `.end` with the error (a `PortalError` as it is, any other
    ///   as `workFailed`); NONE only if it waited.
    mutating func workFailed(_ error: any Error) -> Action {
        switch state {
        case .starting, .working:
            let failure = error as? PortalError ?? .workFailed(String(describing: error))
            return end(failure, level: .error, writesNone: isWaiting)
        default:
            return refuse("the work's failure")
        }
    }

    /// The guest trapped again on this conversation's region.
    /// - Parameter answer: arg4, a response code (a 32-bit int in a 64-bit
    ///   register may arrive sign-extended), or 0 when the guest gave the
    ///   conversation up and starts a new one on the region.
    /// - Returns: what to read, `.resume` for a code without a header,
    ///   `.restart`, or `.end` for an answer that is no response code.
    @inline(__always)
    mutating func guestAnswered(_ answer: UInt64) -> Action {
        guard case .awaitingAnswer(let payloadHint) = state else { return refuse("an answer") }
        let low = UInt32(truncatingIfNeeded: answer)
        if low == 0 {
            state = .ended
            failure = .abandoned
            return .restart(Ending(level: .warn, writesNone: false, leavesTable: true, cancelsWork: true))
        }
        let code = ResponseCode(rawValue: low)
        guard code.isValid, answer >> 32 == 0 || answer >> 32 == 0xffff_ffff else {
            return end(.invalidResponse(answer), level: .error, writesNone: true)
        }
        switch code {
        case .readOK, .readPartial:
            state = .readingAnswer(code)
            return .readAnswer(code, payloadHint: payloadHint)
        case .readNumber:
            state = .readingAnswer(code)
            return .readHeader(code)
        default:
            state = .working
            return .resume(code)
        }
    }

    /// The answer's header was read.
    /// - Returns: `.resume`, or `.end` when the answer does not fit the region.
    @inline(__always)
    mutating func answerRead(_ header: RegionHeader, regionSize: Int) -> Action {
        guard case .readingAnswer(let code) = state else { return refuse("a read answer") }
        if code.carriesPayload && header.size > UInt64(regionSize) {
            return end(.answerTooLarge(code, size: header.size, regionSize: regionSize), level: .error,
                       writesNone: true)
        }
        state = .working
        return .resume(code)
    }

    /// The answer could not be read from the region.
    /// - Returns: `.end`, with NONE (the guest is still in its loop).
    mutating func answerUnreadable(bytes: Int) -> Action {
        guard case .readingAnswer = state else { return refuse("an unreadable answer") }
        return end(.regionUnreadable(bytes: bytes), level: .error, writesNone: true)
    }

    /// The engine ended the waiting conversation from outside (reclaimed as
    /// abandoned, or the plugin unloads) and took it out of the table itself,
    /// under the table's lock. Nothing is written: the guest may have given
    /// the page to someone else.
    /// - Returns: `.end` with `reason`, at warn.
    mutating func endedFromOutside(_ reason: PortalError) -> Action {
        guard case .awaitingAnswer = state else { return refuse("an end from outside") }
        state = .ended
        failure = reason
        return .end(Ending(level: .warn, writesNone: false, leavesTable: false, cancelsWork: true))
    }

    private mutating func end(_ failure: PortalError?, level: LogLevel, writesNone: Bool) -> Action {
        let ending = Ending(level: level, writesNone: writesNone, leavesTable: isWaiting,
                            cancelsWork: failure != nil)
        state = .ended
        self.failure = failure
        return .end(ending)
    }

    @inline(never)
    private mutating func refuse(_ event: String) -> Action {
        let waited = isWaiting
        let wasEnded = state == .ended
        failure = PortalError.workFailed("the engine delivered \(event) while the conversation was \(state)")
        state = .ended
        return .refuse(Ending(level: .error, writesNone: waited, leavesTable: waited, cancelsWork: !wasEnded))
    }
}
