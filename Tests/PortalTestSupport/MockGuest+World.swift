import PortalEngine
import PortalOperations

/// A process of the mock guest's world.
package struct FixtureProcess: Sendable {
    package var pid: UInt32
    package var parentPID: UInt32
    package var name: String
    package var uid: UInt32
    package var gid: UInt32
    package var effectiveUID: UInt32
    package var effectiveGID: UInt32
    package var createTime: UInt64 { UInt64(pid) * 1_000_000 + 7 }
    package var arguments: [String] = []
    package var environment: [String] = []
    package var executable: String? = nil
    package var heap: (start: UInt64, end: UInt64)? = nil
    package var mappings: [MemoryMapping] = []
    /// Open fds, in increasing order (gaps allowed).
    package var fileDescriptors: [(Int32, String)] = []
    package var workingDirectory = "/"
    /// Where the argv area lies in guest memory, for raw reads (set by the guest).
    package var argumentsStart: UInt64 = 0

    package init(pid: UInt32, parentPID: UInt32, name: String, uid: UInt32 = 1000, gid: UInt32 = 1001,
                 effectiveUID: UInt32 = 0, effectiveGID: UInt32 = 2) {
        self.pid = pid
        self.parentPID = parentPID
        self.name = name
        self.uid = uid
        self.gid = gid
        self.effectiveUID = effectiveUID
        self.effectiveGID = effectiveGID
    }
}

/// What the mock guest's kernel and file system hold.
package struct World: Sendable {
    package var processes: [FixtureProcess] = []
    package var currentPID: UInt32 = 1
    package var files: [String: [UInt8]] = [:]
    /// Files whose VFS_READ answers -EINVAL while READ_FILE works (procfs on 6.x).
    package var vfsReadRefused: Set<String> = []
    package var symbols: [String: UInt64] = [:]
    /// Shell commands `run(shellCommand:)` may send: wait status and output.
    package var shellCommands: [String: (status: Int64, output: [UInt8])] = [:]

    package init() {}
}

/// What serving the world's ops changes in the module, beyond the world.
struct KernelState {
    var handles: [UInt32: (path: String, position: Int)] = [:]
    var nextHandleGeneration: UInt32 = 1
    /// Where COPY_BUF_GUEST's next buffer goes (above `kernelBase`).
    var nextKernelBuffer: UInt64
    /// Programs EXEC ran: path, argv, envp, wait.
    var executed: [(String, [String], [String], Bool)] = []

    init(layout: GuestLayout) {
        nextKernelBuffer = layout.wordBits == 64 ? 0xffff_8880_0000_0000 : 0xc800_0000
    }
}

/// Strings laid out back to back, each with its NUL (an argv or envp area).
package func cStrings(_ strings: [String]) -> [UInt8] {
    var bytes: [UInt8] = []
    for string in strings { bytes += Array(string.utf8) + [UInt8(0)] }
    return bytes
}

/// The module's handlers for the typed operations' ops, in the exact
/// formats of PROTOCOL.md §6, in any layout. It pages as the real module
/// does (72 processes, 28 mappings, 127 fds per 4 KiB page, string pools
/// at D + 2032 / D + 2048).
extension MockGuest {
    /// Programs EXEC ran: path, argv, envp, wait.
    package var executed: [(String, [String], [String], Bool)] { kernel.executed }

    /// Maps each process's argv area where OSI_PROC says it is: straddling
    /// a page boundary, so raw reads of it cross pages.
    func mapArgumentAreas() {
        for index in world.processes.indices where !world.processes[index].arguments.isEmpty {
            let start = 0x40_0000 + UInt64(index) * 0x2000 + 0xff0
            let area = cStrings(world.processes[index].arguments)
            map(start, count: UInt64(area.count))
            store(area, at: start)
            world.processes[index].argumentsStart = start
        }
    }

    private func u64(_ value: UInt64) -> [UInt8] { layout.bytes(of: value) }
    private func u32(_ value: UInt32) -> [UInt8] { layout.bytes(of: value) }

    private func task(_ pid: UInt32) -> FixtureProcess? {
        let wanted = pid == currentProcessID ? world.currentPID : pid
        return world.processes.first { $0.pid == wanted }
    }

    /// The path at the start of the payload (up to its NUL, at most 255 bytes).
    private func requestPath(_ payload: [UInt8]) -> (String, Int) {
        let end = payload.prefix(256).firstIndex(of: 0) ?? min(payload.count, 255)
        return (String(decoding: payload[..<end], as: UTF8.self), end + 1)
    }

    /// Serves op `name` from the world into `answer` and `payload` (both the
    /// command's header and nothing on entry); an op it does not know
    /// answers WRITE_FAIL.
    func serveWorld(_ name: String, _ request: RegionHeader, payloadAddress: UInt64,
                    answer: inout RegionHeader, payload out: inout [UInt8]) {
        let incoming = bytes(at: payloadAddress, count: regionSize)
        func reply(_ code: ResponseCode, _ payload: [UInt8] = [], size: UInt64? = nil) {
            answer.op = code.rawValue
            out = payload
            answer.size = size ?? UInt64(payload.count)
        }
        func number(_ value: UInt64) { answer.op = ResponseCode.readNumber.rawValue; answer.size = value }
        let chunk = regionSize
        switch name {
        case "OSI_PROC":
            guard let task = task(request.pid) else { reply(.readFail, size: 0); break }
            let argvLength = UInt64(task.arguments.reduce(0) { $0 + $1.utf8.count + 1 })
            let fields: [UInt64] = [
                0xffff_0000_0000 + UInt64(task.pid) * 0x100, 0x5000 + UInt64(task.pid), UInt64(task.pid),
                UInt64(task.parentPID), 208, task.createTime, UInt64(task.mappings.count),
                task.heap?.start ?? 0, task.heap?.end ?? 0, 0x7ffd_0000, 0x40_0000, 0x41_0000, 0x42_0000,
                0x43_0000, task.argumentsStart, task.argumentsStart + argvLength, 0x7ffd_1000, 0x7ffd_1400, 0,
                0x7f00_0000, 0xc000_0000, UInt64(task.uid), UInt64(task.gid), UInt64(task.effectiveUID),
                UInt64(task.effectiveGID), task.createTime + 1,
            ]
            let nameBytes = Array(task.name.utf8.prefix(15))
            reply(.readOK, fields.flatMap(u64) + nameBytes + [0], size: UInt64(208 + nameBytes.count))
        case "OSI_PROC_ALL":
            let skip = Int(min(request.address, UInt64(Int32.max)))
            let perPage = (chunk - 16) / 56
            let page = world.processes.dropFirst(skip).prefix(perPage)
            var data = u64(UInt64(page.count)) + u64(UInt64(world.processes.count))
            for task in page {
                data += u64(UInt64(task.pid)) + u64(UInt64(task.parentPID)) + u64(task.createTime)
                data += u32(task.uid) + u32(task.gid) + u32(task.effectiveUID) + u32(task.effectiveGID)
                let comm = Array(task.name.utf8.prefix(15))
                data += comm + [UInt8](repeating: 0, count: 16 - comm.count)
            }
            reply(.readOK, data)
        case "OSI_PROC_MEM":
            guard let task = task(request.pid), let heap = task.heap else { reply(.readFail, size: 0); break }
            reply(.readOK, u64(heap.start) + u64(heap.end))
        case "OSI_PROC_EXE":
            guard let task = task(request.pid), let exe = task.executable else { reply(.readFail, size: 0); break }
            reply(.readOK, Array(exe.utf8) + [0], size: UInt64(exe.utf8.count))
        case "OSI_MAPPINGS":
            guard let task = task(request.pid) else { reply(.readFail, size: 16); break }
            let perPage = (chunk / 2) / 72
            var pool: [UInt8] = []
            let poolStart = 16 + perPage * 72
            var records: [UInt8] = []
            var count = 0
            var index = Int(min(request.address, UInt64(Int32.max)))
            answer.address = 0
            while index < task.mappings.count {
                if count >= perPage || poolStart + pool.count >= chunk - 256 {
                    answer.address = UInt64(index)
                    break
                }
                let mapping = task.mappings[index]
                let device = UInt64(mapping.deviceMajor) << 20 | UInt64(mapping.deviceMinor)
                let nameOffset = UInt64(poolStart + pool.count)
                records += u64(mapping.start) + u64(mapping.size) + u64(nameOffset) + u64(nameOffset)
                records += u64(mapping.fileOffset) + u64(mapping.flags) + u64(mapping.fileOffset)
                records += u64(device) + u64(mapping.inode)
                pool += Array(mapping.name.utf8) + [0]
                count += 1
                index += 1
            }
            var data = u64(UInt64(count)) + u64(UInt64(task.mappings.count)) + records
            data += [UInt8](repeating: 0xa5, count: poolStart - data.count) + pool
            reply(.readOK, data)
        case "READ_FDS":
            guard let task = task(request.pid) else { reply(.readFail, size: 16); break }
            let start = Int32(truncatingIfNeeded: request.address)
            let perPage = (chunk / 2) / 16
            let poolStart = 16 + perPage * 16
            var pool: [UInt8] = []
            var records: [UInt8] = []
            var count = 0
            answer.address = 0
            let entries = start == -100 ? [(Int32(-100), task.workingDirectory)]
                : task.fileDescriptors.filter { $0.0 >= start }
            for (fd, path) in entries {
                if count >= perPage {
                    answer.address = UInt64(UInt32(bitPattern: fd))
                    break
                }
                records += u64(UInt64(bitPattern: Int64(fd))) + u64(UInt64(poolStart + pool.count))
                pool += Array(path.utf8) + [0]
                count += 1
            }
            var data = u64(UInt64(count)) + u64(UInt64(task.fileDescriptors.count)) + records
            data += [UInt8](repeating: 0xa5, count: poolStart - data.count) + pool
            reply(.readOK, data)
        case "READ_PROCARGS":
            guard let task = task(request.pid), !task.arguments.isEmpty else {
                reply(.readFail, Array("UNKNOWN_PROCARGS".utf8)); break
            }
            var area = Array(cStrings(task.arguments).prefix(chunk - 1))
            for index in 0..<(area.count - 1) where area[index] == 0 { area[index] = 0x20 }
            reply(.readOK, area)
        case "READ_PROCENV":
            guard let task = task(request.pid), !task.environment.isEmpty else {
                reply(.readFail, Array("UNKNOWN_PROCENV".utf8)); break
            }
            reply(.readOK, Array(cStrings(task.environment).prefix(chunk - 1)))
        case "READ_FILE":
            let (path, _) = requestPath(incoming)
            let wanted = request.size == 0 || request.size > UInt64(chunk - 1) ? chunk - 1 : Int(request.size)
            guard let file = world.files[path], request.address < UInt64(file.count) else {
                reply(.readFail, Array("READ_FILE_FAIL".utf8)); break
            }
            reply(.readOK, Array(file[Int(request.address)...].prefix(wanted)))
        case "WRITE_FILE":
            let (path, pathLength) = requestPath(incoming)
            let count = request.size == 0 ? chunk - 1 : Int(min(request.size, UInt64(chunk)))
            guard path.hasPrefix("/tmp/") || world.files[path] != nil else { reply(.writeFail); break }
            let data = Array(incoming[pathLength...].prefix(count))
            var file = world.files[path] ?? []
            let offset = Int(request.address)
            if file.count < offset + data.count { file += [UInt8](repeating: 0, count: offset + data.count - file.count) }
            file.replaceSubrange(offset..<offset + data.count, with: data)
            world.files[path] = file
            number(UInt64(data.count))
        case "VFS_OPEN":
            let (path, _) = requestPath(incoming)
            guard world.files[path] != nil else {
                reply(.readOK, u32(UInt32(bitPattern: -2)) + u32(0) + u64(0)); break
            }
            let slot = UInt32(kernel.handles.count % 16)
            let handle = kernel.nextHandleGeneration << 8 | (slot + 1)
            kernel.nextHandleGeneration += 1
            kernel.handles[handle] = (path, 0)
            reply(.readOK, u32(0) + u32(handle) + u64(path.hasPrefix("/proc/") ? 0x9fa0 : 0xef53))
        case "VFS_READ":
            let handle = UInt32(truncatingIfNeeded: request.address)
            guard let open = kernel.handles[handle], let file = world.files[open.path] else {
                reply(.readOK, u32(UInt32(bitPattern: -9)) + u32(0) + [UInt8](repeating: 0, count: 8)); break
            }
            guard !world.vfsReadRefused.contains(open.path) else {
                reply(.readOK, u32(UInt32(bitPattern: -22)) + u32(0) + [UInt8](repeating: 0, count: 8)); break
            }
            let wanted = Int(min(request.size, UInt64(chunk - 16)))
            let data = Array(file[open.position...].prefix(wanted))
            kernel.handles[handle]!.position += data.count
            let atEnd: UInt8 = kernel.handles[handle]!.position >= file.count ? 1 : 0
            reply(.readOK, u32(0) + u32(UInt32(data.count)) + [atEnd] + [UInt8](repeating: 0, count: 7) + data)
        case "VFS_CLOSE":
            let handle = UInt32(truncatingIfNeeded: request.address)
            let status: Int32 = kernel.handles.removeValue(forKey: handle) == nil ? -9 : 0
            reply(.readOK, u32(UInt32(bitPattern: status)) + u32(0))
        case "EXEC":
            var strings = incoming.split(separator: 0, maxSplits: 40, omittingEmptySubsequences: false)
                .map { String(decoding: $0, as: UTF8.self) }
            let path = strings.removeFirst()
            let argv = Array(strings.prefix { !$0.isEmpty })
            strings.removeFirst(argv.count + 1)
            let envp = Array(strings.prefix { !$0.isEmpty })
            kernel.executed.append((path, argv, envp, request.address != 0))
            number(UInt64(bitPattern: execute(path: path, argv: argv)))
        case "KALLSYMS_LOOKUP":
            let (symbol, _) = requestPath(incoming)
            number(world.symbols[symbol] ?? 0)
        case "READ_PTR_ARRAY":
            var data: [UInt8] = []
            var at = request.address
            let word = layout.wordBits / 8
            while true {
                let raw = mappedBytes(at: at, count: word)
                guard raw.count == word else { break }
                let pointer = raw.withUnsafeBytes {
                    word == 8 ? layout.load(UInt64.self, from: $0.baseAddress!)
                        : UInt64(layout.load(UInt32.self, from: $0.baseAddress!))
                }
                guard pointer != 0 else { break }
                var string: [UInt8] = []
                while string.count < 127, let byte = mappedBytes(at: pointer + UInt64(string.count), count: 1).first,
                      byte != 0 {
                    string.append(byte)
                }
                guard data.count + string.count + 1 <= chunk else { break }
                data += string + [0]
                at += UInt64(word)
            }
            reply(.readOK, data)
        case "COPY_BUF_GUEST":
            let address = kernel.nextKernelBuffer
            kernel.nextKernelBuffer += 0x1000 * ((request.size + 0xfff) / 0x1000 + 1)
            map(address, count: request.size)
            store(Array(incoming.prefix(Int(min(request.size, UInt64(chunk))))), at: address)
            number(address)
        default:
            reply(.writeFail)
        }
    }

    /// EXEC's programs: `/bin/sh -c '{ CMD\n} > OUT 2>&1'` and `/bin/rm -f PATH`.
    private func execute(path: String, argv: [String]) -> Int64 {
        switch (path, argv.count) {
        case ("/bin/sh", 3) where argv[1] == "-c":
            let script = argv[2]
            let parts = script.split(separator: "\n", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0].hasPrefix("{ "), parts[1].hasPrefix("} > "),
                  parts[1].hasSuffix(" 2>&1") else { return 2 << 8 }
            let command = String(parts[0].dropFirst(2))
            let output = String(parts[1].dropFirst(4).dropLast(5))
            let (status, bytes) = world.shellCommands[command] ?? (127 << 8, Array("sh: \(command): not found\n".utf8))
            world.files[output] = bytes
            return status
        case ("/bin/rm", 3) where argv[1] == "-f":
            world.files[argv[2]] = nil
            return 0
        case ("/bin/true", _):
            return 0
        default:
            return -2
        }
    }
}
