import PortalEngine

/// Limits that keep paging bounded whatever totals a guest reports: each
/// page must add at least one record, and no list may grow beyond these.
public enum PagingLimits {
    /// Linux's PID_MAX_LIMIT: no guest has more processes.
    public static let maxProcesses: UInt64 = 4_194_304
    /// Far above any `vm.max_map_count` a firmware sets (default 65530).
    public static let maxMappings: UInt64 = 4_194_304
    /// Linux's largest `nr_open`.
    public static let maxFileDescriptors = 1 << 20
    /// Linux's largest argv area (MAX_ARG_STRLEN * ...: a 2 MiB ceiling
    /// covers every stack-size limit firmware uses).
    public static let maxArgumentBytes: UInt64 = 2 << 20
}

/// Processes, memory maps, file descriptors, arguments and environment.
///
/// `pid` is a guest pid; nil (the default) means the task that is current
/// in the guest while it serves the command: the one whose hypercall this
/// conversation is, or for interrupt work whichever task made the syscall
/// that noticed the interrupt flag.
extension Guest {
    /// Every user process (kernel threads are left out), paged through
    /// OSI_PROC_ALL with the skip count: ⌈n / 72⌉ round trips with 4 KiB
    /// pages (one more when n is a multiple of 72 and the guest's total
    /// shrank meanwhile).
    /// - Returns: The processes, in the guest's task-list order.
    /// - Throws: ``GuestOperationError``: `.pagingDidNotEnd` if `total_count`
    ///   grows between pages or exceeds ``PagingLimits/maxProcesses``,
    ///   `.malformedReply` for a page that breaks the format, `.guestRefused` on READ_FAIL.
    nonisolated(nonsending) public func processes() async throws -> [ProcessSummary] {
        let name = "OSI_PROC_ALL"
        let subject = "all processes"
        let op = try resolveOp(name, subject: subject)
        return try await collectPages(name, subject: subject, limit: PagingLimits.maxProcesses) { skip in
            try await readReply(name, PortalCommand(op: op, address: skip), subject: subject,
                                refusal: "the process list could not be read") { answer throws(ReplyFormatError) in
                try ReplyDecoder.processPage(answer.payload, layout: layout)
            }
        }
    }

    /// One task's 26 OSI_PROC fields and its name. One round trip.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The task's details.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when no such task exists.
    nonisolated(nonsending) public func process(pid: UInt32? = nil) async throws -> ProcessDetails {
        let subject = Self.subject(pid: pid)
        let op = try resolveOp("OSI_PROC", subject: subject)
        return try await readReply("OSI_PROC", PortalCommand(op: op, pid: pid ?? 0), subject: subject,
                                   refusal: "no such task") { answer throws(ReplyFormatError) in
            try ReplyDecoder.processDetails(answer.payload, layout: layout)
        }
    }

    /// The path of a task's executable (`d_path` of its exe file). One round trip.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The path.
    /// - Throws: ``GuestOperationError``: `.guestRefused` for no such task or no exe file (a kernel thread).
    nonisolated(nonsending) public func executable(pid: UInt32? = nil) async throws -> String {
        let subject = Self.subject(pid: pid)
        let op = try resolveOp("OSI_PROC_EXE", subject: subject)
        return try await readReply("OSI_PROC_EXE", PortalCommand(op: op, pid: pid ?? 0), subject: subject,
                                   refusal: "no such task, or it has no executable file") { answer in
            ReplyDecoder.string(answer.payload)
        }
    }

    /// A task's heap bounds (`start_brk`, `brk`). One round trip.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The bounds.
    /// - Throws: ``GuestOperationError``: `.guestRefused` for no such task or no mm.
    nonisolated(nonsending) public func heap(pid: UInt32? = nil) async throws -> HeapBounds {
        let subject = Self.subject(pid: pid)
        let op = try resolveOp("OSI_PROC_MEM", subject: subject)
        return try await readReply("OSI_PROC_MEM", PortalCommand(op: op, pid: pid ?? 0), subject: subject,
                                   refusal: "no such task, or it has no memory map") { answer throws(ReplyFormatError) in
            try ReplyDecoder.heapBounds(answer.payload, layout: layout)
        }
    }

    /// A task's memory mappings, paged through OSI_MAPPINGS with the skip
    /// count: ⌈n / 28⌉ round trips with 4 KiB pages (fewer records fit a
    /// page when names are long).
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The mappings in address order, names from the string pool.
    /// - Throws: ``GuestOperationError``: `.guestRefused` for no such task,
    ///   `.pagingDidNotEnd` or `.malformedReply` as for ``processes()``.
    nonisolated(nonsending) public func mappings(pid: UInt32? = nil) async throws -> [MemoryMapping] {
        let name = "OSI_MAPPINGS"
        let subject = Self.subject(pid: pid)
        let op = try resolveOp(name, subject: subject)
        return try await collectPages(name, subject: subject, limit: PagingLimits.maxMappings) { skip in
            try await readReply(name, PortalCommand(op: op, pid: pid ?? 0, address: skip), subject: subject,
                                refusal: "no such task") { answer throws(ReplyFormatError) in
                try ReplyDecoder.mappingPage(answer.payload, layout: layout)
            }
        }
    }

    /// The mapping of a task that holds `address`: ``mappings(pid:)`` and a lookup.
    /// - Parameters:
    ///   - address: A guest virtual address.
    ///   - pid: The task; nil for the current task.
    /// - Returns: The mapping, or nil when the address is not mapped.
    /// - Throws: What ``mappings(pid:)`` throws.
    nonisolated(nonsending) public func mapping(containing address: UInt64,
                                                pid: UInt32? = nil) async throws -> MemoryMapping? {
        try await mappings(pid: pid).mapping(containing: address)
    }

    /// A task's open file descriptors, paged through READ_FDS on the resume
    /// fd each reply carries in its header (not fd + count: fd numbers have
    /// gaps). ⌈n / 127⌉ round trips, fewer records per page for long paths.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The descriptors in fd order.
    /// - Throws: ``GuestOperationError``: `.guestRefused` for no such task;
    ///   `.pagingDidNotEnd` for a resume fd that does not move forward or a
    ///   page without records that does not end the list.
    nonisolated(nonsending) public func fileDescriptors(pid: UInt32? = nil) async throws -> [FileDescriptor] {
        let name = "READ_FDS"
        let subject = Self.subject(pid: pid)
        let op = try resolveOp(name, subject: subject)
        var descriptors: [FileDescriptor] = []
        var paging = ResumeFDPaging(limit: PagingLimits.maxFileDescriptors)
        while true {
            let (page, resume) = try await readReply(
                name, PortalCommand(op: op, pid: pid ?? 0, address: paging.nextAddress),
                subject: subject, refusal: "no such task") { answer throws(ReplyFormatError) in
                (try ReplyDecoder.fileDescriptorPage(answer.payload, layout: layout),
                 Int32(truncatingIfNeeded: answer.address))
            }
            descriptors += page.records
            do {
                if try paging.accept(count: page.records.count, resume: resume) { return descriptors }
            } catch {
                throw GuestOperationError(.pagingDidNotEnd, op: name, subject: subject, response: .readOK,
                                          detail: error.message)
            }
        }
    }

    /// A task's working directory: READ_FDS with fd -100. One round trip.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The path.
    /// - Throws: ``GuestOperationError``: `.guestRefused` for no such task
    ///   or a reply without the -100 record.
    nonisolated(nonsending) public func workingDirectory(pid: UInt32? = nil) async throws -> String {
        let name = "READ_FDS"
        let subject = Self.subject(pid: pid)
        let op = try resolveOp(name, subject: subject)
        let cwdFD: Int32 = -100
        let page = try await readReply(
            name, PortalCommand(op: op, pid: pid ?? 0, address: UInt64(bitPattern: Int64(cwdFD))),
            subject: subject, refusal: "no such task") { answer throws(ReplyFormatError) in
            try ReplyDecoder.fileDescriptorPage(answer.payload, layout: layout)
        }
        guard let record = page.records.first(where: { $0.number == cwdFD }) else {
            throw GuestOperationError(.guestRefused, op: name, subject: subject, response: .readOK, detail:
                "the reply has no working-directory record (fd -100) among its \(page.records.count)")
        }
        return record.path
    }

    /// A task's command-line arguments.
    ///
    /// For the current task (`pid` nil) the argv area `arg_start ..< arg_end`
    /// is read raw (OSI_PROC, then READ in region-sized chunks: 1 +
    /// ⌈bytes / 4072⌉ round trips), so every argument keeps its boundaries,
    /// spaces and empty arguments included. For another task READ_PROCARGS
    /// is the only way in (one round trip), and it LOSES boundaries: the
    /// guest turns the NULs between arguments into spaces, so an argument
    /// containing a space comes back as two and empty arguments vanish; it
    /// also stops at 4071 bytes.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The arguments, `argv[0]` first.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when the guest has
    ///   no arguments for the task (READ_FAIL, "UNKNOWN_PROCARGS"),
    ///   `.memoryAccessFailed` when the argv area cannot be read.
    nonisolated(nonsending) public func arguments(pid: UInt32? = nil) async throws -> [String] {
        let subject = Self.subject(pid: pid)
        if pid == nil || pid == currentProcessID {
            let task = try await process()
            guard task.argumentsEnd > task.argumentsStart,
                  task.argumentsEnd - task.argumentsStart <= PagingLimits.maxArgumentBytes else {
                throw GuestOperationError(.malformedReply, op: "OSI_PROC", subject: subject, detail:
                    "arg_start \(hex(task.argumentsStart)) .. arg_end \(hex(task.argumentsEnd)) is not an argv area of 1 to \(PagingLimits.maxArgumentBytes) bytes")
            }
            let count = Int(task.argumentsEnd - task.argumentsStart)
            let bytes: [UInt8]
            do {
                bytes = try await readBytes(at: task.argumentsStart, count: count)
            } catch let error as GuestError {
                throw GuestOperationError(.memoryAccessFailed, op: "READ",
                                          subject: "the argv area of \(subject) at \(hex(task.argumentsStart))",
                                          detail: error.description)
            }
            return bytes.withUnsafeBytes { ReplyDecoder.nulSeparatedStrings($0) }
        }
        let op = try resolveOp("READ_PROCARGS", subject: subject)
        return try await readReply("READ_PROCARGS", PortalCommand(op: op, pid: pid ?? 0), subject: subject,
                                   refusal: "no such task, or it has no argv area (UNKNOWN_PROCARGS)") { answer in
            ReplyDecoder.spaceSeparatedArguments(answer.payload)
        }
    }

    /// A task's environment, each entry split at its FIRST `=` so values
    /// containing `=` survive. One round trip (READ_PROCENV); the guest
    /// returns at most 4071 bytes of it.
    /// - Parameter pid: The task; nil for the current task.
    /// - Returns: The entries in order.
    /// - Throws: ``GuestOperationError``: `.guestRefused` when the guest has
    ///   no environment for the task (READ_FAIL, "UNKNOWN_PROCENV").
    nonisolated(nonsending) public func environment(pid: UInt32? = nil) async throws -> [EnvironmentVariable] {
        let subject = Self.subject(pid: pid)
        let op = try resolveOp("READ_PROCENV", subject: subject)
        return try await readReply("READ_PROCENV", PortalCommand(op: op, pid: pid ?? 0), subject: subject,
                                   refusal: "no such task, or its environment cannot be read (UNKNOWN_PROCENV)") { answer in
            ReplyDecoder.environment(answer.payload)
        }
    }

    /// Pages a skip-count list (OSI_PROC_ALL, OSI_MAPPINGS) until the
    /// records reach `total_count` or a page comes back empty. Bounded: a
    /// total over `limit` or one that grows ends it with an error, and every
    /// page that does not end the list adds at least one record.
    nonisolated(nonsending) private func collectPages<Record>(
        _ name: String, subject: String, limit: UInt64,
        page fetch: (_ skip: UInt64) async throws -> ReplyDecoder.Page<Record>
    ) async throws -> [Record] {
        var records: [Record] = []
        var paging = SkipCountPaging(limit: limit)
        while true {
            let page = try await fetch(paging.nextAddress)
            records += page.records
            do {
                if try paging.accept(count: page.records.count, totalCount: page.totalCount) { return records }
            } catch {
                throw GuestOperationError(.pagingDidNotEnd, op: name, subject: subject, response: .readOK,
                                          detail: error.message)
            }
        }
    }
}

