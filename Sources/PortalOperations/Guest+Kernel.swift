import PortalEngine

/// Kernel symbols, pointer lists and kernel buffers.
extension Guest {
    /// The address of a kernel symbol (KALLSYMS_LOOKUP). One round trip.
    /// - Parameter symbol: The symbol's name, as /proc/kallsyms lists it.
    /// - Returns: Its address.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when the guest knows no such symbol.
    nonisolated(nonsending) public func symbolAddress(_ symbol: String) async throws -> UInt64 {
        let name = "KALLSYMS_LOOKUP"
        let subject = "symbol \(symbol)"
        let bytes = Array(symbol.utf8)
        guard !bytes.isEmpty, !bytes.contains(0), bytes.count < regionSize else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "a symbol name must have 1 to \(regionSize - 1) bytes and no NUL, this one has \(bytes.count)")
        }
        let op = try resolveOp(name, subject: subject)
        let address = try await numberReply(name, PortalCommand(op: op, payload: .bytes((bytes + [0])[...])),
                                            subject: subject, refusal: "the lookup failed")
        guard address != 0 else {
            throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readNumber,
                                      detail: "the guest knows no such symbol (it answered address 0)")
        }
        return address
    }

    /// The strings of a NULL-terminated `char *[]` in the current task's
    /// memory (an argv or envp), through READ_PTR_ARRAY. One round trip.
    /// The guest cuts each string at 127 bytes and stops, silently, when the
    /// region is full (about 30 strings of 127 bytes).
    /// - Parameter address: The array's guest address.
    /// - Returns: The strings in order.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when the guest cannot read the array.
    nonisolated(nonsending) public func readPointerArray(at address: UInt64) async throws -> [String] {
        let name = "READ_PTR_ARRAY"
        let subject = "address \(hex(address))"
        let op = try resolveOp(name, subject: subject)
        return try await readReply(name, PortalCommand(op: op, address: address), subject: subject,
                                   refusal: "the array cannot be read") { answer in
            ReplyDecoder.nulSeparatedStrings(answer.payload)
        }
    }

    /// Copies `bytes` into a new kernel buffer (COPY_BUF_GUEST) and returns
    /// its address, for arguments that must be kernel pointers (a syscall
    /// hook's string filter, say). One round trip. The guest never frees the
    /// buffer.
    ///
    /// At most one region (4072 bytes with 4 KiB pages): the engine clamps
    /// every command's size to the region, so the guest would allocate only
    /// that much, and writing the rest after it would overrun the buffer.
    /// - Parameter bytes: 1 to `regionSize` bytes.
    /// - Returns: The kernel buffer's address.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when the guest could
    ///   not allocate (address 0), `.requestTooLarge` for more than a region.
    nonisolated(nonsending) public func copyIntoKernel(_ bytes: [UInt8]) async throws -> UInt64 {
        let name = "COPY_BUF_GUEST"
        let subject = "\(bytes.count) bytes"
        guard !bytes.isEmpty, bytes.count <= regionSize else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "a kernel buffer takes 1 to \(regionSize) bytes (one region), not \(bytes.count)")
        }
        let op = try resolveOp(name, subject: subject)
        let address = try await numberReply(name, PortalCommand(op: op, size: Int64(bytes.count), payload: .bytes(bytes[...])),
                                            subject: subject, refusal: "the buffer could not be allocated")
        guard address != 0 else {
            throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readNumber,
                                      detail: "the guest could not allocate the buffer (it answered address 0)")
        }
        return address
    }
}
