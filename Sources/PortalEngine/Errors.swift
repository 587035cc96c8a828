/// Why the engine ended a conversation, refused a hypercall, or refused a
/// request of analysis code (an attach, a queued interrupt).
///
/// An extensible struct rather than a closed enum, in the style of
/// ``GuestError`` and PortalOperations' `GuestOperationError`: later releases
/// can add codes without breaking code that looks at them. Compare ``code``
/// with the static codes (`error.code == .abandoned`); ``description`` is the
/// log text, saying what happened and what was expected.
public struct PortalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable name (`invalid-response`), for logs and JSON.
        public let name: String

        private init(_ name: String) { self.name = name }

        /// The guest sent a value that is no response code.
        public static let invalidResponse = Code("invalid-response")
        /// A response's size does not fit the region.
        public static let answerTooLarge = Code("answer-too-large")
        /// The region could not be read from guest memory.
        public static let regionUnreadable = Code("region-unreadable")
        /// The region could not be written to guest memory.
        public static let regionUnwritable = Code("region-unwritable")
        /// The work asked for an op outside the op table (the guest would
        /// answer WRITE_FAIL).
        public static let invalidOp = Code("invalid-op")
        /// The work itself failed: a Swift error or a C step's message.
        public static let workFailed = Code("work-failed")
        /// The guest started a new conversation on the region of a waiting
        /// one (arg4 = 0): it gave up on the old one.
        public static let abandoned = Code("abandoned")
        /// Every waiting conversation was being served by a vCPU at that
        /// moment, and `max_conversations` were waiting: this one was refused.
        public static let conversationLimit = Code("conversation-limit")
        /// `max_conversations` were waiting and the guest had neglected this
        /// one the longest: it was reclaimed to make room.
        public static let reclaimedForRoom = Code("reclaimed-for-room")
        /// The guest did not come back to this conversation while
        /// `stale_after` others started waiting: it was reclaimed.
        public static let neverCameBack = Code("never-came-back")
        /// The region's conversation was being served on another vCPU.
        public static let busyOnAnotherVCPU = Code("busy-on-another-vCPU")
        /// The guest sent a response on a region with no conversation.
        public static let strayAnswer = Code("stray-answer")
        /// A Swift handler awaited something that was not a guest operation.
        public static let suspendedOutsideTheGuest = Code("suspended-outside-the-guest")
        /// Thrown into a handler whose conversation is already over.
        public static let conversationEnded = Code("conversation-ended")
        /// The plugin was unloaded while the conversation waited.
        public static let unloaded = Code("unloaded")
        /// Work cannot be attached to a hypercall number the protocol uses.
        public static let reservedHypercall = Code("reserved-hypercall")
        /// No interrupt handler has the name that was queued.
        public static let noInterruptHandler = Code("no-interrupt-handler")
        /// `max_interrupts` interrupts are pending already.
        public static let interruptLimit = Code("interrupt-limit")

        /// The code's name, as logs print it.
        public var description: String { name }
    }

    /// What kind of failure this is.
    public let code: Code
    /// What happened and what was expected, in words: the log text.
    public let description: String

    /// Makes an error of `code` with the log text `description`.
    package init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    /// What log lines are rate-limited by (with the hypercall number), so
    /// that one kind of trouble cannot hide another: the code's name in words.
    package var kind: String { String(code.name.map { $0 == "-" ? " " : $0 }) }

    package static func invalidResponse(_ value: UInt64) -> PortalError {
        PortalError(.invalidResponse,
                    "the guest answered \(hex(value)), expected a response code from 0xf0000000 to 0xf0000006")
    }

    package static func answerTooLarge(_ code: ResponseCode, size: UInt64, regionSize: Int) -> PortalError {
        PortalError(.answerTooLarge,
                    "the guest answered \(code) with size \(size), more than the region's \(regionSize) payload bytes")
    }

    package static func regionUnreadable(bytes: Int) -> PortalError {
        PortalError(.regionUnreadable, "the region cannot be read (\(bytes) bytes)")
    }

    package static func regionUnwritable(bytes: Int) -> PortalError {
        PortalError(.regionUnwritable, "the region cannot be written (\(bytes) bytes)")
    }

    package static func invalidOp(_ op: UInt32, max: UInt32) -> PortalError {
        PortalError(.invalidOp, "the work sent op \(op), expected an op from 1 to \(max - 1) of the op table")
    }

    package static func workFailed(_ message: String) -> PortalError {
        PortalError(.workFailed, "the work failed: \(message)")
    }

    package static let abandoned = PortalError(
        .abandoned, "the guest started a new conversation on this region; the unfinished one was dropped")

    package static func conversationLimit(_ limit: Int) -> PortalError {
        PortalError(.conversationLimit,
                    "\(limit) conversations are already live (max_conversations) and every one is being served right now; this one was refused")
    }

    package static func evictedForRoom(limit: Int, waitStarts: UInt64) -> PortalError {
        PortalError(.reclaimedForRoom,
                    "\(limit) conversations were waiting (max_conversations) and the guest had not come back to this one for the longest (\(waitStarts) conversations started waiting since its last trap); reclaimed to make room")
    }

    package static func neverCameBack(waitStarts: UInt64) -> PortalError {
        PortalError(.neverCameBack,
                    "the guest never came back to this conversation (\(waitStarts) conversations started waiting since its last trap, stale_after); reclaimed")
    }

    package static let busyOnAnotherVCPU = PortalError(
        .busyOnAnotherVCPU, "the region's conversation is being served on another vCPU right now; the trap was ignored")

    package static func strayAnswer(_ code: ResponseCode) -> PortalError {
        PortalError(.strayAnswer, "the guest answered \(code) but no conversation is live on this region; its loop was ended")
    }

    package static let suspendedOutsideGuest = PortalError(
        .suspendedOutsideTheGuest,
        "the handler awaited something other than a guest operation; handlers may only await the guest")

    package static let conversationEnded = PortalError(.conversationEnded, "the conversation has ended")

    package static let unloaded = PortalError(.unloaded, "the plugin was unloaded while the conversation waited for the guest; ended")
}

/// A guest operation of the Swift API (``Guest``) did not get what it asked for.
///
/// An extensible struct with a ``code``, like ``PortalError``: compare the
/// code with the static codes (`error.code == .readFailed`). The other
/// properties say what the operation asked for and how far it got; those
/// that do not apply to a code are nil.
public struct GuestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable name (`read-failed`), for logs and JSON.
        public let name: String

        private init(_ name: String) { self.name = name }

        /// A read stopped short: ``GuestError/bytesDone`` bytes of
        /// ``GuestError/count`` arrived (READ_PARTIAL or READ_FAIL).
        public static let readFailed = Code("read-failed")
        /// A write stopped short: ``GuestError/bytesDone`` bytes of
        /// ``GuestError/count`` were written (WRITE_FAIL).
        public static let writeFailed = Code("write-failed")
        /// An op expected to answer READ_NUM answered something else.
        public static let numberFailed = Code("number-failed")
        /// The op table in use has no op of this name
        /// (``GuestError/opName``): give the guest module's own op list with
        /// `ops=`.
        public static let opMissing = Code("op-missing")
        /// The guest sent a response code the operation never gets.
        public static let unexpectedResponse = Code("unexpected-response")
        /// A handler started a guest operation while another was waiting
        /// (e.g. with `async let`): a conversation carries one command at a time.
        public static let concurrentOperation = Code("concurrent-operation")

        /// The code's name, as logs print it.
        public var description: String { name }
    }

    /// What kind of failure this is.
    public let code: Code
    /// The op number sent, when a command was sent.
    public let op: UInt32?
    /// The op's name, when the op table lacked it (``Code/opMissing``).
    public let opName: String?
    /// The guest address the operation started at, for reads and writes.
    public let address: UInt64?
    /// How many bytes the read or write asked for.
    public let count: Int?
    /// How many bytes arrived or were written before it stopped.
    public let bytesDone: Int?
    /// The guest's response code, when it answered.
    public let response: ResponseCode?
    /// What happened, in words: `reading 4 bytes at 0x10 stopped after 0 bytes (READ_FAIL)`.
    public let description: String

    private init(_ code: Code, op: UInt32? = nil, opName: String? = nil, address: UInt64? = nil,
                 count: Int? = nil, bytesDone: Int? = nil, response: ResponseCode? = nil,
                 description: String) {
        self.code = code
        self.op = op
        self.opName = opName
        self.address = address
        self.count = count
        self.bytesDone = bytesDone
        self.response = response
        self.description = description
    }

    package static func readFailed(op: UInt32, address: UInt64, count: Int, bytesRead: Int,
                                   response: ResponseCode) -> GuestError {
        GuestError(.readFailed, op: op, address: address, count: count, bytesDone: bytesRead, response: response,
                   description: "reading \(count) bytes at \(hex(address)) stopped after \(bytesRead) bytes (\(response))")
    }

    package static func writeFailed(op: UInt32, address: UInt64, count: Int, bytesWritten: Int) -> GuestError {
        GuestError(.writeFailed, op: op, address: address, count: count, bytesDone: bytesWritten,
                   response: .writeFail,
                   description: "writing \(count) bytes at \(hex(address)) stopped after \(bytesWritten) bytes (WRITE_FAIL)")
    }

    package static func numberFailed(op: UInt32, response: ResponseCode) -> GuestError {
        GuestError(.numberFailed, op: op, response: response,
                   description: "op \(op) answered \(response), expected READ_NUM")
    }

    package static func opMissing(_ name: String) -> GuestError {
        GuestError(.opMissing, opName: name, description: "the op table has no op \(name)")
    }

    package static func unexpectedResponse(op: UInt32, response: ResponseCode) -> GuestError {
        GuestError(.unexpectedResponse, op: op, response: response,
                   description: "op \(op) answered \(response), which it never does")
    }

    package static let concurrentOperation = GuestError(
        .concurrentOperation, description: "a guest operation was started while another one was waiting for the guest")
}
