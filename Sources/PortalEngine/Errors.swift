/// Why the engine ended a conversation or refused a hypercall. The
/// descriptions are the log text: each says what happened and what was expected.
public enum PortalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// arg4 / header op was not a response code.
    case invalidResponse(UInt64)
    /// An answer's size does not fit the region.
    case answerTooLarge(ResponseCode, size: UInt64, regionSize: Int)
    case regionUnreadable(bytes: Int)
    case regionUnwritable(bytes: Int)
    /// The work asked for an op the guest would answer with WRITE_FAIL.
    case invalidOp(UInt32, max: UInt32)
    /// The work itself failed (a Swift error or a C step's message).
    case workFailed(String)
    /// The guest trapped with arg4 = 0 on a region with a live conversation:
    /// it gave up on the old one and started anew.
    case abandoned
    /// Every waiting conversation was being served by a vCPU at that moment.
    case conversationLimit(Int)
    /// The table was full: the conversation the guest neglected longest
    /// (idle while this many others started waiting) made room.
    case evictedForRoom(limit: Int, waitStarts: UInt64)
    /// Idle while this many other conversations started waiting.
    case neverCameBack(waitStarts: UInt64)
    case busyOnAnotherVCPU
    case strayAnswer(ResponseCode)
    /// A Swift handler awaited something that was not a guest operation.
    case suspendedOutsideGuest
    /// Thrown into a handler whose conversation is already over.
    case conversationEnded
    case unloaded

    /// The case's name: what log lines are rate-limited by (with the
    /// hypercall number), so one kind of trouble cannot hide another.
    public var kind: String {
        switch self {
        case .invalidResponse: "invalid response"
        case .answerTooLarge: "answer too large"
        case .regionUnreadable: "region unreadable"
        case .regionUnwritable: "region unwritable"
        case .invalidOp: "invalid op"
        case .workFailed: "work failed"
        case .abandoned: "abandoned"
        case .conversationLimit: "conversation limit"
        case .evictedForRoom: "reclaimed for room"
        case .neverCameBack: "never came back"
        case .busyOnAnotherVCPU: "busy on another vCPU"
        case .strayAnswer: "stray answer"
        case .suspendedOutsideGuest: "suspended outside the guest"
        case .conversationEnded: "conversation ended"
        case .unloaded: "unloaded"
        }
    }

    public var description: String {
        switch self {
        case .invalidResponse(let value):
            "the guest answered \(hex(value)), expected a response code from 0xf0000000 to 0xf0000006"
        case .answerTooLarge(let code, let size, let regionSize):
            "the guest answered \(code) with size \(size), more than the region's \(regionSize) payload bytes"
        case .regionUnreadable(let bytes):
            "the region cannot be read (\(bytes) bytes)"
        case .regionUnwritable(let bytes):
            "the region cannot be written (\(bytes) bytes)"
        case .invalidOp(let op, let max):
            "the work sent op \(op), expected an op from 1 to \(max - 1) of the op table"
        case .workFailed(let message):
            "the work failed: \(message)"
        case .abandoned:
            "the guest started a new conversation on this region; the unfinished one was dropped"
        case .conversationLimit(let limit):
            "\(limit) conversations are already live (max_conversations) and every one is being served right now; this one was refused"
        case .evictedForRoom(let limit, let starts):
            "\(limit) conversations were waiting (max_conversations) and the guest had not come back to this one for the longest (\(starts) conversations started waiting since its last trap); reclaimed to make room"
        case .neverCameBack(let starts):
            "the guest never came back to this conversation (\(starts) conversations started waiting since its last trap, stale_after); reclaimed"
        case .busyOnAnotherVCPU:
            "the region's conversation is being served on another vCPU right now; the trap was ignored"
        case .strayAnswer(let code):
            "the guest answered \(code) but no conversation is live on this region; its loop was ended"
        case .suspendedOutsideGuest:
            "the handler awaited something other than a guest operation; handlers may only await the guest"
        case .conversationEnded:
            "the conversation has ended"
        case .unloaded:
            "the plugin was unloaded"
        }
    }
}

/// A guest operation of the Swift API did not get what it asked for.
public enum GuestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Reading `count` bytes at `address` stopped after `bytesRead` bytes.
    case readFailed(address: UInt64, count: Int, bytesRead: Int, answer: ResponseCode)
    case writeFailed(address: UInt64, count: Int, bytesWritten: Int)
    case numberFailed(op: UInt32, answer: ResponseCode)
    /// The op table has no such op.
    case unknownOp(String)
    /// The guest sent an answer the operation has no use for.
    case unexpectedAnswer(op: UInt32, answer: ResponseCode)
    /// A handler started a guest operation while another was waiting (e.g.
    /// with `async let`): a conversation carries one command at a time.
    case concurrentOperation

    public var description: String {
        switch self {
        case .readFailed(let address, let count, let bytesRead, let answer):
            "reading \(count) bytes at \(hex(address)) stopped after \(bytesRead) bytes (\(answer))"
        case .writeFailed(let address, let count, let bytesWritten):
            "writing \(count) bytes at \(hex(address)) stopped after \(bytesWritten) bytes (WRITE_FAIL)"
        case .numberFailed(let op, let answer):
            "op \(op) answered \(answer), expected READ_NUM"
        case .unknownOp(let name):
            "the op table has no op \(name)"
        case .unexpectedAnswer(let op, let answer):
            "op \(op) answered \(answer), which it never does"
        case .concurrentOperation:
            "a guest operation was started while another one was waiting for the guest"
        }
    }
}
