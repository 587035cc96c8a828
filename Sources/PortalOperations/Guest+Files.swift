import PortalEngine
import Synchronization

/// Numbers for ``Guest/run(shellCommand:)``'s output files, unique within the plugin.
private let runCounter = Atomic<UInt64>(0)

/// The errno VFS_READ answers where READ_FILE works (some /proc and /sys files).
private let invalidArgumentErrno: Int32 = 22

/// Guest files and programs.
extension Guest {
    /// The most ``readFile(path:)`` reads before it gives up on a file.
    public static let maxWholeFileBytes = 64 << 20

    /// Reads up to `count` bytes of a guest file from `offset`; fewer when
    /// the file ends first.
    ///
    /// With VFS_OPEN/VFS_READ/VFS_CLOSE in the op table (the current
    /// module), the open's errno tells a missing file (ENOENT) from an empty
    /// one, and the bytes come in ⌈(offset + count) / 4056⌉ VFS_READs (the
    /// handle reads from the start, so bytes before `offset` are read and
    /// dropped) plus the open and the close. Where VFS_READ answers EINVAL
    /// (some /proc and /sys files) or the table lacks the VFS ops, READ_FILE
    /// reads ⌈count / 4071⌉ chunks at `offset` (one more when the file ends
    /// on a chunk boundary). READ_FILE alone cannot tell a missing file
    /// from an empty one: its READ_FAIL on the first chunk is an error.
    /// - Parameters:
    ///   - path: An absolute guest path, at most 255 bytes.
    ///   - offset: The first byte to read.
    ///   - count: The most bytes to return.
    /// - Returns: The bytes; empty only for a file that exists and has none at `offset`.
    /// - Throws: ``GuestOperationError``: `.guestRefused` with the errno when
    ///   the guest cannot open or read the file.
    nonisolated(nonsending) public func readFile(path: String, offset: UInt64 = 0,
                                                 count: Int) async throws -> [UInt8] {
        let pathBytes = try pathBytes(path, op: "READ_FILE")
        guard count > 0 else { return [] }
        if let open = ops.number(of: "VFS_OPEN"), let read = ops.number(of: "VFS_READ"),
           let close = ops.number(of: "VFS_CLOSE") {
            if let bytes = try await readThroughHandle(path: path, pathBytes: pathBytes, offset: offset,
                                                       count: count, ops: (open, read, close)) {
                return bytes
            }
            return try await readFileChunks(path: path, pathBytes: pathBytes, offset: offset, count: count,
                                            fileExists: true)
        }
        return try await readFileChunks(path: path, pathBytes: pathBytes, offset: offset, count: count,
                                        fileExists: false)
    }

    /// Reads a whole guest file, up to its end (``readFile(path:offset:count:)``'s cost).
    /// - Parameter path: An absolute guest path, at most 255 bytes.
    /// - Returns: The file's bytes.
    /// - Throws: ``GuestOperationError``: as ``readFile(path:offset:count:)``,
    ///   and `.requestTooLarge` for a file over ``maxWholeFileBytes``.
    nonisolated(nonsending) public func readFile(path: String) async throws -> [UInt8] {
        let bytes = try await readFile(path: path, offset: 0, count: Self.maxWholeFileBytes + 1)
        guard bytes.count <= Self.maxWholeFileBytes else {
            throw GuestOperationError(.requestTooLarge, op: "READ_FILE", subject: "path \(path)", detail:
                "the file has more than \(Self.maxWholeFileBytes) bytes; read it in parts with readFile(path:offset:count:)")
        }
        return bytes
    }

    /// VFS_OPEN, VFS_READs, VFS_CLOSE. Returns nil when the first VFS_READ
    /// answers EINVAL (the caller falls back to READ_FILE).
    nonisolated(nonsending) private func readThroughHandle(
        path: String, pathBytes: [UInt8], offset: UInt64, count: Int, ops: (UInt32, UInt32, UInt32)
    ) async throws -> [UInt8]? {
        let subject = "path \(path)"
        let opened = try await readReply("VFS_OPEN", PortalCommand(op: ops.0, payload: .bytes(pathBytes[...])),
                                         subject: subject, refusal: "the open failed") { answer throws(ReplyFormatError) in
            try ReplyDecoder.openedFile(answer.payload, layout: layout)
        }
        guard opened.errno == 0 else {
            throw GuestOperationError(.guestRefused, op: "VFS_OPEN", subject: subject, response: .readOK,
                                      errno: opened.errno, detail: "the guest cannot open the file")
        }
        let handle = UInt64(opened.handle)
        var result: [UInt8] = []
        var skipped: UInt64 = 0
        var firstRead = true
        let outcome: [UInt8]?
        do {
            reading: while result.count < count {
                let wanted = max(1, regionSize - 16)
                let chunk = try await readReply("VFS_READ", PortalCommand(op: ops.1, address: handle, size: Int64(wanted)),
                                                subject: subject, refusal: "the read failed") { answer throws(ReplyFormatError) in
                    try ReplyDecoder.fileChunk(answer.payload, layout: layout, wanted: wanted)
                }
                if chunk.errno == invalidArgumentErrno && firstRead { break reading }
                guard chunk.errno == 0 else {
                    throw GuestOperationError(.guestRefused, op: "VFS_READ", subject: subject, response: .readOK,
                                              errno: chunk.errno, detail: "the guest cannot read the file at byte \(skipped + UInt64(result.count))")
                }
                firstRead = false
                var bytes = chunk.bytes[...]
                if skipped < offset {
                    let drop = Int(min(UInt64(bytes.count), offset - skipped))
                    skipped += UInt64(drop)
                    bytes = bytes.dropFirst(drop)
                }
                result += bytes.prefix(count - result.count)
                // A read of nothing is the end, whatever the eof flag says.
                if chunk.isEndOfFile || chunk.bytes.isEmpty { break reading }
            }
            outcome = firstRead ? nil : result
        } catch let error as GuestOperationError {
            _ = try? await closeHandle(handle, op: ops.2)
            throw error
        }
        if let status = try await closeHandle(handle, op: ops.2), status != 0 {
            throw GuestOperationError(.guestRefused, op: "VFS_CLOSE", subject: subject, response: .readOK,
                                      errno: status, detail: "the guest could not close handle \(handle)")
        }
        return outcome
    }

    /// VFS_CLOSE; returns the errno (0 = closed).
    nonisolated(nonsending) private func closeHandle(_ handle: UInt64, op: UInt32) async throws -> Int32? {
        try await readReply("VFS_CLOSE", PortalCommand(op: op, address: handle), subject: "handle \(handle)",
                            refusal: "the close failed") { answer throws(ReplyFormatError) in
            try ReplyDecoder.closeStatus(answer.payload, layout: layout)
        }
    }

    /// READ_FILE chunk by chunk. READ_FAIL past the first chunk (or on the
    /// first when the file is known to exist) is the end of the file.
    nonisolated(nonsending) private func readFileChunks(path: String, pathBytes: [UInt8], offset: UInt64,
                                                        count: Int, fileExists: Bool) async throws -> [UInt8] {
        let name = "READ_FILE"
        let subject = "path \(path)"
        let op = try resolveOp(name, subject: subject)
        var result: [UInt8] = []
        while result.count < count {
            let wanted = min(count - result.count, max(1, regionSize - 1))
            let position = offset &+ UInt64(result.count)
            let ended = try await withResponse(to: PortalCommand(op: op, address: position, size: Int64(wanted),
                                                               payload: .bytes(pathBytes[...]))) { answer in
                switch answer.code {
                case .readOK:
                    guard answer.payload.count <= wanted else {
                        throw GuestOperationError(.malformedReply, op: name, subject: subject, response: answer.code,
                                                  detail: "malformed reply: \(answer.payload.count) bytes for the \(wanted) asked at offset \(position)")
                    }
                    result += answer.payload
                    return answer.payload.count < wanted
                case .readFail where result.isEmpty && !fileExists:
                    throw GuestOperationError(.guestRefused, op: name, subject: subject, response: answer.code, detail:
                        "the guest answered READ_FAIL at offset \(position): the file is missing, unreadable, or has no bytes there (READ_FILE cannot tell which; this op table has no VFS_OPEN)")
                case .readFail:
                    return true
                default:
                    throw GuestOperationError(.unexpectedResponse, op: name, subject: subject, response: answer.code,
                                              detail: "the guest answered \(answer.code), expected READ_OK or READ_FAIL")
                }
            }
            if ended { break }
        }
        return result
    }

    /// Writes `bytes` into a guest file at `offset` (created with mode 0644
    /// if missing, never truncated). Chunked so that path + bytes fit the
    /// region: ⌈bytes / (4072 - path - 1)⌉ round trips. Writing no bytes
    /// sends nothing (WRITE_FILE reads size 0 as "a whole region").
    /// - Parameters:
    ///   - path: An absolute guest path, at most 255 bytes.
    ///   - bytes: What to write.
    ///   - offset: Where in the file.
    /// - Throws: ``GuestOperationError``: `.guestRefused` on WRITE_FAIL or a short write.
    nonisolated(nonsending) public func writeFile(path: String, bytes: [UInt8], offset: UInt64 = 0) async throws {
        let name = "WRITE_FILE"
        let subject = "path \(path)"
        let pathBytes = try pathBytes(path, op: name)
        let op = try resolveOp(name, subject: subject)
        let room = regionSize - pathBytes.count
        guard room > 0 else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "the path leaves no room for bytes in a \(regionSize)-byte region")
        }
        var done = 0
        while done < bytes.count {
            let chunk = min(room, bytes.count - done)
            let written = try await numberReply(
                name, PortalCommand(op: op, address: offset &+ UInt64(done), size: Int64(chunk),
                                    payload: .bytes((pathBytes + bytes[done..<done + chunk])[...])),
                subject: subject, refusal: "the file cannot be opened or written at offset \(offset &+ UInt64(done))")
            guard written == UInt64(chunk) else {
                throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readNumber, detail:
                    "the guest wrote \(signedWord(written)) of \(chunk) bytes at offset \(offset &+ UInt64(done))")
            }
            done += chunk
        }
    }

    /// Runs a program in the guest through the kernel's usermode helper
    /// (EXEC). One round trip. No output is captured (see ``run(shellCommand:)``).
    /// - Parameters:
    ///   - path: The program's absolute path.
    ///   - arguments: The whole argv, `argv[0]` included (at most 15); empty means `[path]`.
    ///   - environment: `NAME=value` strings (at most 15).
    ///   - wait: Whether the guest waits for the program to exit.
    /// - Returns: The wait status when waiting (exit code in bits 8-15), else 0.
    /// - Throws: ``GuestOperationError``: `.guestRefused` with the errno when
    ///   the helper could not start the program; `.requestTooLarge` for too
    ///   many strings or more than a region of them.
    @discardableResult
    nonisolated(nonsending) public func execute(path: String, arguments: [String] = [], environment: [String] = [],
                        wait: Bool = true) async throws -> Int64 {
        let name = "EXEC"
        let subject = "path \(path)"
        var payload = try pathBytes(path, op: name)
        let argv = arguments.isEmpty ? [path] : arguments
        guard argv.count <= 15, environment.count <= 15 else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "EXEC takes at most 15 arguments and 15 environment strings, got \(argv.count) and \(environment.count)")
        }
        for list in [argv, environment] {
            for string in list {
                let bytes = Array(string.utf8)
                guard !bytes.contains(0) else {
                    throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                        "the string \"\(string)\" contains a NUL")
                }
                payload += bytes + [0]
            }
            payload.append(0)
        }
        guard payload.count <= regionSize else {
            throw GuestOperationError(.requestTooLarge, op: name, subject: subject, detail:
                "path, arguments and environment take \(payload.count) bytes, more than the region's \(regionSize)")
        }
        let op = try resolveOp(name, subject: subject)
        let result = signedWord(try await numberReply(
            name, PortalCommand(op: op, address: wait ? 1 : 0, size: Int64(payload.count), payload: .bytes(payload[...])),
            subject: subject, refusal: "the program could not be started"))
        guard result >= 0 else {
            throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readNumber,
                                      errno: Int32(truncatingIfNeeded: -result),
                                      detail: "the usermode helper could not run the program")
        }
        return result
    }

    /// Runs `shellCommand` with `/bin/sh -c` in the guest and returns its
    /// exit status and output (standard output and error together). Costs
    /// an EXEC, a whole-file read of the output file (``readFile(path:)``:
    /// 3 round trips for short output) and an EXEC of `/bin/rm`.
    /// - Parameter shellCommand: A shell command line.
    /// - Returns: The wait status, exit code and output.
    /// - Throws: ``GuestOperationError`` from the EXEC or the read; the
    ///   output file is removed in either case.
    nonisolated(nonsending) public func run(shellCommand: String) async throws -> CommandResult {
        let number = runCounter.add(1, ordering: .relaxed).newValue
        let outputPath = "/tmp/portal-run-\(String(conversation.regionAddress, radix: 16))-\(number).out"
        let status = try await execute(path: "/bin/sh", arguments: [
            "/bin/sh", "-c", "{ \(shellCommand)\n} > \(outputPath) 2>&1",
        ], wait: true)
        let output: [UInt8]
        do {
            output = try await readFile(path: outputPath)
        } catch let error as GuestOperationError {
            _ = try? await execute(path: "/bin/rm", arguments: ["/bin/rm", "-f", outputPath], wait: true)
            throw error
        }
        try await execute(path: "/bin/rm", arguments: ["/bin/rm", "-f", outputPath], wait: true)
        return CommandResult(waitStatus: status, output: output)
    }
}
