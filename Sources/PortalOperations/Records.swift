/// The values typed guest operations return: plain stored properties,
/// `Codable` so a control plane can hand them out as JSON unchanged.

/// One user process as OSI_PROC_ALL lists it (kernel threads are left out).
public struct ProcessSummary: Sendable, Equatable, Codable {
    /// The process id (the thread-group id, as `ps` shows it).
    public var pid: UInt64
    /// The parent's pid (`real_parent`), 0 for the first task.
    public var parentPID: UInt64
    /// The task's start time in the guest's clock (nanoseconds since boot).
    public var createTime: UInt64
    /// The real user id.
    public var uid: UInt32
    /// The real group id.
    public var gid: UInt32
    /// The effective user id.
    public var effectiveUID: UInt32
    /// The effective group id.
    public var effectiveGID: UInt32
    /// The task's `comm`: at most 15 bytes, the executable's base name cut short.
    public var name: String

    /// Makes a summary (tests and mock guests build expected values with it).
    /// - Parameters:
    ///   - pid: The process id.
    ///   - parentPID: The parent's pid.
    ///   - createTime: The start time in the guest's clock.
    ///   - uid: The real user id.
    ///   - gid: The real group id.
    ///   - effectiveUID: The effective user id.
    ///   - effectiveGID: The effective group id.
    ///   - name: The task's `comm`.
    public init(pid: UInt64, parentPID: UInt64, createTime: UInt64, uid: UInt32, gid: UInt32,
                effectiveUID: UInt32, effectiveGID: UInt32, name: String) {
        self.pid = pid
        self.parentPID = parentPID
        self.createTime = createTime
        self.uid = uid
        self.gid = gid
        self.effectiveUID = effectiveUID
        self.effectiveGID = effectiveGID
        self.name = name
    }
}

/// Everything OSI_PROC tells about one task: its 26 fields and its name.
/// Addresses are the guest's; memory fields are 0 for a task without an mm.
public struct ProcessDetails: Sendable, Equatable, Codable {
    /// The guest address of the task's `task_struct`.
    public var taskStructAddress: UInt64
    /// The guest address of its page directory (`mm->pgd`), 0 without an mm.
    public var pageDirectoryAddress: UInt64
    /// The process id (the thread-group id, as `ps` shows it).
    public var pid: UInt64
    /// The parent's pid (`real_parent`), 0 for the first task.
    public var parentPID: UInt64
    /// Where the name starts in the reply (208 in every release so far).
    public var nameOffset: UInt64
    /// The task's start time in the guest's clock (nanoseconds since boot).
    public var createTime: UInt64
    /// How many memory mappings (VMAs) the task has.
    public var mappingCount: UInt64
    /// `start_brk`: where the heap begins.
    public var heapStart: UInt64
    /// `brk`: the heap's current end.
    public var heapEnd: UInt64
    /// `start_stack`: the initial stack pointer region.
    public var stackStart: UInt64
    /// `start_code`: where the text segment begins.
    public var codeStart: UInt64
    /// `end_code`: one past the text segment.
    public var codeEnd: UInt64
    /// `start_data`: where the data segment begins.
    public var dataStart: UInt64
    /// `end_data`: one past the data segment.
    public var dataEnd: UInt64
    /// `arg_start ..< arg_end`: the argument strings, NUL-separated, in the task's memory.
    public var argumentsStart: UInt64
    /// `arg_end`: one past the argv area.
    public var argumentsEnd: UInt64
    /// `env_start ..< env_end`: the environment strings, in the task's memory.
    public var environmentStart: UInt64
    /// `env_end`: one past the environment area.
    public var environmentEnd: UInt64
    /// Always 0: the guest module does not report it.
    public var savedAuxiliaryVector: UInt64
    /// `mmap_base`: where mmap allocations start.
    public var mmapBase: UInt64
    /// The size of the task's user address space.
    public var taskSize: UInt64
    /// The real user id.
    public var uid: UInt64
    /// The real group id.
    public var gid: UInt64
    /// The effective user id.
    public var effectiveUID: UInt64
    /// The effective group id.
    public var effectiveGID: UInt64
    /// `start_time` of the task (nanoseconds since boot, monotonic).
    public var startTime: UInt64
    /// The task's `comm`.
    public var name: String

    /// The 26 fields in OSI_PROC's order, then the name.
    /// - Parameters:
    ///   - fields: exactly 26 values, in the reply's order (PROTOCOL.md §6).
    ///   - name: The task's name.
    public init(fields: [UInt64], name: String) {
        precondition(fields.count == 26, "OSI_PROC has 26 fields")
        taskStructAddress = fields[0]; pageDirectoryAddress = fields[1]; pid = fields[2]
        parentPID = fields[3]; nameOffset = fields[4]; createTime = fields[5]; mappingCount = fields[6]
        heapStart = fields[7]; heapEnd = fields[8]; stackStart = fields[9]; codeStart = fields[10]
        codeEnd = fields[11]; dataStart = fields[12]; dataEnd = fields[13]; argumentsStart = fields[14]
        argumentsEnd = fields[15]; environmentStart = fields[16]; environmentEnd = fields[17]
        savedAuxiliaryVector = fields[18]; mmapBase = fields[19]; taskSize = fields[20]; uid = fields[21]
        gid = fields[22]; effectiveUID = fields[23]; effectiveGID = fields[24]; startTime = fields[25]
        self.name = name
    }

    /// The 26 fields in OSI_PROC's order (the inverse of ``init(fields:name:)``).
    public var fields: [UInt64] {
        [taskStructAddress, pageDirectoryAddress, pid, parentPID, nameOffset, createTime, mappingCount,
         heapStart, heapEnd, stackStart, codeStart, codeEnd, dataStart, dataEnd, argumentsStart,
         argumentsEnd, environmentStart, environmentEnd, savedAuxiliaryVector, mmapBase, taskSize,
         uid, gid, effectiveUID, effectiveGID, startTime]
    }
}

/// A task's heap as OSI_PROC_MEM reports it.
public struct HeapBounds: Sendable, Equatable, Codable {
    /// `start_brk`.
    public var start: UInt64
    /// `brk`: one past the heap's last byte.
    public var end: UInt64

    /// - Parameters:
    ///   - start: `start_brk`.
    ///   - end: `brk`.
    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = end
    }
}

/// One memory mapping (VMA) of a task, as OSI_MAPPINGS reports it.
public struct MemoryMapping: Sendable, Equatable, Codable {
    /// The first address.
    public var start: UInt64
    /// One past the last address.
    public var end: UInt64
    /// The offset in the mapped file (`vm_pgoff << PAGE_SHIFT`).
    public var fileOffset: UInt64
    /// The raw `vm_flags`.
    public var flags: UInt64
    /// `r`, `w`, `x` or `-`, then `s` (shared) or `p` (private), as /proc/PID/maps prints them.
    public var permissions: String
    /// The file's device, split as the guest packs it (`major << 20 | minor`).
    public var deviceMajor: UInt32
    /// The file's device, minor number.
    public var deviceMinor: UInt32
    /// The file's inode number, 0 for anonymous memory.
    public var inode: UInt64
    /// A path, `[heap]`, `[stack]`, `[vdso]`, `[anon:NAME]`, or `""` /
    /// `[anonymous]` (depending on the module release) for anonymous memory.
    public var name: String

    /// `VM_READ`, as the guest module passes `vm_flags` through.
    public static let readFlag: UInt64 = 0x1
    /// `VM_WRITE`.
    public static let writeFlag: UInt64 = 0x2
    /// `VM_EXEC`.
    public static let executeFlag: UInt64 = 0x4
    /// `VM_SHARED`.
    public static let sharedFlag: UInt64 = 0x8

    /// Builds a mapping from the reply's fields.
    /// - Parameters:
    ///   - start: The base address.
    ///   - size: The length in bytes.
    ///   - fileOffset: The offset in the mapped file.
    ///   - flags: The raw `vm_flags`.
    ///   - device: `major << 20 | minor`.
    ///   - inode: The inode number.
    ///   - name: The name from the string pool.
    public init(start: UInt64, size: UInt64, fileOffset: UInt64, flags: UInt64, device: UInt64,
                inode: UInt64, name: String) {
        self.start = start
        self.end = start &+ size
        self.fileOffset = fileOffset
        self.flags = flags
        self.permissions = String([
            flags & Self.readFlag != 0 ? "r" : "-",
            flags & Self.writeFlag != 0 ? "w" : "-",
            flags & Self.executeFlag != 0 ? "x" : "-",
            flags & Self.sharedFlag != 0 ? "s" : "p",
        ])
        self.deviceMajor = UInt32(truncatingIfNeeded: device >> 20)
        self.deviceMinor = UInt32(truncatingIfNeeded: device & 0xf_ffff)
        self.inode = inode
        self.name = name
    }

    /// The mapping's length in bytes.
    public var size: UInt64 { end &- start }
    /// Whether the mapping is readable (`VM_READ`).
    public var isReadable: Bool { flags & Self.readFlag != 0 }
    /// Whether the mapping is writable (`VM_WRITE`).
    public var isWritable: Bool { flags & Self.writeFlag != 0 }
    /// Whether the mapping is executable (`VM_EXEC`).
    public var isExecutable: Bool { flags & Self.executeFlag != 0 }
    /// Whether the mapping is shared (`VM_SHARED`).
    public var isShared: Bool { flags & Self.sharedFlag != 0 }

    /// Whether `address` lies in `start ..< end`.
    /// - Parameter address: A guest virtual address.
    /// - Returns: true if this mapping holds it.
    public func contains(_ address: UInt64) -> Bool { address >= start && address < end }
}

extension Array where Element == MemoryMapping {
    /// The mapping that holds `address`, if any (a linear scan: a task has
    /// tens to hundreds of mappings).
    /// - Parameter address: A guest virtual address.
    /// - Returns: The mapping, or nil if the address is not mapped.
    public func mapping(containing address: UInt64) -> MemoryMapping? {
        first { $0.contains(address) }
    }
}

/// One open file descriptor and the path it refers to (`d_path`, so
/// sockets and pipes read `socket:[1234]`, `pipe:[5678]`).
public struct FileDescriptor: Sendable, Equatable, Codable {
    /// The fd number (-100 for the working directory record).
    public var number: Int32
    /// The path the fd refers to.
    public var path: String

    /// - Parameters:
    ///   - number: The fd number.
    ///   - path: Its path.
    public init(number: Int32, path: String) {
        self.number = number
        self.path = path
    }
}

/// One environment entry, split at its first `=` (values may contain `=`).
public struct EnvironmentVariable: Sendable, Equatable, Codable {
    /// The text before the first `=`.
    public var name: String
    /// Everything after the first `=`; empty for an entry without one.
    public var value: String

    /// - Parameters:
    ///   - name: The text before the first `=`.
    ///   - value: The text after it.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// What a shell command run in the guest left behind.
public struct CommandResult: Sendable, Equatable, Codable {
    /// The raw wait status the usermode helper reported.
    public var waitStatus: Int64
    /// The exit code, when the shell exited normally (`WIFEXITED`); nil if a
    /// signal ended it.
    public var exitCode: Int32?
    /// Standard output and standard error, interleaved as written.
    public var output: [UInt8]

    /// - Parameters:
    ///   - waitStatus: The wait status.
    ///   - output: What the command wrote.
    public init(waitStatus: Int64, output: [UInt8]) {
        self.waitStatus = waitStatus
        self.exitCode = waitStatus & 0x7f == 0 ? Int32(truncatingIfNeeded: (waitStatus >> 8) & 0xff) : nil
        self.output = output
    }

    /// The output decoded as UTF-8 (invalid sequences repaired).
    public var outputText: String { String(decoding: output, as: UTF8.self) }
}
