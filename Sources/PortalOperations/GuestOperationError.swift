import PortalEngine

/// A typed guest operation did not get what it asked for.
///
/// An extensible struct rather than a closed enum, so that later operations
/// can add codes without breaking callers that switch over them: compare
/// ``code`` with the static codes (`error.code == .guestRefused`). Every
/// error names the op, what it was about (``subject``) and what the guest
/// answered, because "it failed" is no help when a firmware misbehaves.
public struct GuestOperationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable name (`guest-refused`), for logs and JSON.
        public let name: String

        private init(_ name: String) { self.name = name }

        /// The op table in use has no op of this name: give the guest
        /// module's own op list with `ops=`.
        public static let opMissing = Code("op-missing")
        /// The guest answered a failure (READ_FAIL, WRITE_FAIL, a negative
        /// errno, an unknown symbol): the thing asked for does not exist or
        /// cannot be had.
        public static let guestRefused = Code("guest-refused")
        /// The guest answered a response code this op never produces.
        public static let unexpectedResponse = Code("unexpected-response")
        /// The reply's bytes break the op's format: a count beyond the page,
        /// a string outside the pool, a missing NUL.
        public static let malformedReply = Code("malformed-reply")
        /// Paging did not converge: a total that grew, a page that never
        /// ended the list, a resume point that went backwards.
        public static let pagingDidNotEnd = Code("paging-did-not-end")
        /// The caller's request cannot be expressed in the op's format (a
        /// path over 255 bytes, more than 15 arguments, ...); nothing was sent.
        public static let requestTooLarge = Code("request-too-large")
        /// A memory read or write the operation needed failed.
        public static let memoryAccessFailed = Code("memory-access-failed")

        /// The message, as logs print it.
        public var description: String { name }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The op that failed, as the op table names it (`OSI_PROC`).
    public var op: String
    /// What the op was about: `pid 42`, `the current task`,
    /// `path /etc/passwd`, `address 0xc0001000`, `symbol printk`.
    public var subject: String
    /// The guest's response code, when it answered.
    public var response: ResponseCode?
    /// The errno the guest reported, positive (`2` for ENOENT), when the
    /// reply format carries one.
    public var errno: Int32?
    /// The specific reason, in words.
    public var detail: String

    /// Makes an error; operations use this, and so may extensions that add
    /// operations of their own.
    /// - Parameters:
    ///   - code: The kind of failure.
    ///   - op: The op's name.
    ///   - subject: What the op was about.
    ///   - response: The guest's response code, if it answered.
    ///   - errno: The positive errno the guest reported, if any.
    ///   - detail: The reason, in words.
    public init(_ code: Code, op: String, subject: String, response: ResponseCode? = nil,
                errno: Int32? = nil, detail: String) {
        self.code = code
        self.op = op
        self.subject = subject
        self.response = response
        self.errno = errno
        self.detail = detail
    }

    /// One line: `OSI_PROC for pid 42: the guest answered READ_FAIL (no such task)`.
    public var description: String {
        var text = "\(op) for \(subject): \(detail)"
        if let errno { text += " (errno \(errno)\(errnoName(errno).map { " " + $0 } ?? ""))" }
        return text
    }
}

/// The names of the errnos a file or program operation commonly reports
/// (Linux numbering, the same on every architecture for these).
func errnoName(_ errno: Int32) -> String? {
    switch errno {
    case 1: "EPERM"
    case 2: "ENOENT"
    case 5: "EIO"
    case 8: "ENOEXEC"
    case 9: "EBADF"
    case 12: "ENOMEM"
    case 13: "EACCES"
    case 14: "EFAULT"
    case 17: "EEXIST"
    case 20: "ENOTDIR"
    case 21: "EISDIR"
    case 22: "EINVAL"
    case 24: "EMFILE"
    case 28: "ENOSPC"
    case 30: "EROFS"
    case 36: "ENAMETOOLONG"
    default: nil
    }
}
