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

    /// The most bytes ``copyIntoKernel(_:)`` copies: 1 MiB, 258 round
    /// trips with 4 KiB pages. The guest allocates the whole buffer at once
    /// and never frees it, so a larger request is more likely a caller's
    /// mistake (a length from guest data) than a filter argument.
    public static let maxKernelBufferBytes = 1 << 20

    /// Copies `bytes` into a new kernel buffer and returns its address, for
    /// arguments that must be kernel pointers (a syscall hook's string
    /// filter, say). The guest never frees the buffer.
    ///
    /// One COPY_BUF_GUEST whose size is the total length and whose payload
    /// is the first region of bytes makes the guest allocate the whole
    /// buffer; WRITEs at the buffer's address plus the offset then carry the
    /// rest, a region each (PROTOCOL.md §6). Round trips: 1 + ⌈(n − r) / r⌉
    /// for n bytes and an r-byte region (1 up to 4072 bytes with 4 KiB
    /// pages); with direct memory (see `Guest`) the rest is written through
    /// the emulator's view instead, and only what it cannot take by WRITE.
    /// - Parameter bytes: 1 to ``maxKernelBufferBytes`` bytes.
    /// - Returns: The kernel buffer's address.
    /// - Throws: ``GuestOperationError``: `.requestTooLarge` for no bytes or
    ///   more than ``maxKernelBufferBytes`` (nothing is sent),
    ///   `.guestRefused` when the guest could not allocate (WRITE_FAIL or
    ///   address 0), `.memoryAccessFailed` when a WRITE of the rest failed
    ///   (the error says at which address and how many bytes were copied; the
    ///   buffer stays allocated).
    nonisolated(nonsending) public func copyIntoKernel(_ bytes: [UInt8]) async throws -> UInt64 {
        let name = "COPY_BUF_GUEST"
        let subject = "\(bytes.count) bytes"
        guard !bytes.isEmpty, bytes.count <= Self.maxKernelBufferBytes else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "a kernel buffer takes 1 to \(Self.maxKernelBufferBytes) bytes (1 MiB), not \(bytes.count)")
        }
        let op = try resolveOp(name, subject: subject)
        let first = min(bytes.count, regionSize)
        let address = try await numberReply(
            name, PortalCommand(op: op, size: Int64(bytes.count), payload: .bytes(bytes[..<first]),
                                sizeIsTotalLength: true),
            subject: subject, refusal: "the buffer could not be allocated")
        guard address != 0 else {
            throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readNumber,
                                      detail: "the guest could not allocate the buffer (it answered address 0)")
        }
        guard first < bytes.count else { return address }
        do {
            try await write(Array(bytes[first...]), at: address &+ UInt64(first))
        } catch let error as GuestError where error.code == .writeFailed {
            let copied = first + (error.bytesDone ?? 0)
            throw GuestOperationError(
                .memoryAccessFailed, op: "WRITE", subject: "the kernel buffer at \(hex(address))",
                response: .writeFail, detail:
                    "the guest answered WRITE_FAIL at \(hex(address &+ UInt64(copied))) after \(copied) of \(bytes.count) bytes were copied (COPY_BUF_GUEST allocated the buffer; the guest never frees it)")
        }
        return address
    }
}
