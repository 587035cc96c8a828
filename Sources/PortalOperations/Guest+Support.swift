import PortalEngine

/// What every typed operation shares: finding its op by name, sending one
/// command and turning the answer into a value or a precise error.
extension Guest {
    /// The number of op `name` in the op table in use.
    /// - Parameters:
    ///   - name: The op's name (`OSI_PROC_ALL`).
    ///   - subject: What the operation is about, for the error.
    /// - Returns: The op's number.
    /// - Throws: ``GuestOperationError`` with code `.opMissing` if the table lacks the op.
    public func resolveOp(_ name: String, subject: String) throws(GuestOperationError) -> UInt32 {
        guard let number = ops.number(of: name) else {
            throw GuestOperationError(.opMissing, op: name, subject: subject, detail:
                "the op table has no op \(name); give the guest module's op list with ops=")
        }
        return number
    }

    /// How errors name a pid argument.
    static func subject(pid: UInt32?) -> String {
        guard let pid, pid != currentProcessID else { return "the current task" }
        return "pid \(pid)"
    }

    /// Sends one command and decodes a READ_OK answer with `decode`, which
    /// sees the payload in place (no copy) and the answer's header fields.
    /// - Parameters:
    ///   - name: The op's name, for errors.
    ///   - command: The command to send.
    ///   - subject: What the operation is about, for errors.
    ///   - refusal: What a READ_FAIL means for this op (`no such task`).
    ///   - decode: Turns the payload into a value.
    /// - Returns: What `decode` returned.
    /// - Throws: ``GuestOperationError`` for a refusal, an unexpected answer
    ///   or a malformed reply; the engine's errors as they are.
    nonisolated(nonsending) func readReply<Value>(
        _ name: String, _ command: PortalCommand, subject: String, refusal: String,
        _ decode: (PortalResponse) throws(ReplyFormatError) -> Value
    ) async throws -> Value {
        try await withResponse(to: command) { answer in
            switch answer.code {
            case .readOK:
                do {
                    return try decode(answer)
                } catch let error as ReplyFormatError {
                    throw GuestOperationError(.malformedReply, op: name, subject: subject,
                                              response: answer.code, detail: "malformed reply: \(error.message)")
                }
            case .readFail, .writeFail:
                throw GuestOperationError(.guestRefused, op: name, subject: subject, response: answer.code,
                                          detail: "the guest answered \(answer.code): \(refusal)")
            default:
                throw GuestOperationError(.unexpectedResponse, op: name, subject: subject, response: answer.code,
                                          detail: "the guest answered \(answer.code), expected READ_OK")
            }
        }
    }

    /// Sends one command that answers READ_NUM and returns the number.
    /// - Parameters:
    ///   - name: The op's name, for errors.
    ///   - command: The command to send.
    ///   - subject: What the operation is about, for errors.
    ///   - refusal: What a READ_FAIL or WRITE_FAIL means for this op.
    /// - Returns: The answer's `size` field.
    /// - Throws: ``GuestOperationError`` for a refusal or an unexpected answer.
    nonisolated(nonsending) func numberReply(_ name: String, _ command: PortalCommand, subject: String,
                                             refusal: String) async throws -> UInt64 {
        try await withResponse(to: command) { answer in
            switch answer.code {
            case .readNumber:
                return answer.size
            case .readFail, .writeFail:
                throw GuestOperationError(.guestRefused, op: name, subject: subject, response: answer.code,
                                          detail: "the guest answered \(answer.code): \(refusal)")
            default:
                throw GuestOperationError(.unexpectedResponse, op: name, subject: subject, response: answer.code,
                                          detail: "the guest answered \(answer.code), expected READ_NUM")
            }
        }
    }

    /// A number the guest returns as a C `long` (a result or `-errno`),
    /// sign-extended from the guest's word width.
    func signedWord(_ value: UInt64) -> Int64 {
        layout.wordBits == 32 ? Int64(Int32(truncatingIfNeeded: value)) : Int64(bitPattern: value)
    }

    /// A path as the guest's file ops take it: at most 255 bytes, no NUL,
    /// followed by its NUL.
    func pathBytes(_ path: String, op: String) throws(GuestOperationError) -> [UInt8] {
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= 255, !bytes.contains(0) else {
            throw GuestOperationError(.requestTooLarge, op: op, subject: "path \(path)", detail:
                "a path must have 1 to 255 bytes and no NUL, this one has \(bytes.count)")
        }
        return bytes + [0]
    }
}
