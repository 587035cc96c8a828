import Glibc
import Portal
import PortalEngine
import PortalOperations
import Synchronization

/// The host side of the Linux test guest (Tests/guests/linux) written with
/// the typed operations of PortalOperations:
///
/// - `module_arg=linux` (`make demo`): serves the syscall-enter event
///   (0x1338). It notes every `execve` the guest makes, and on the first
///   `openat` of the probe path by portal-mapper (guest mapper.c), in that
///   process's context, runs ``LinuxTour/runEveryOperation(_:)`` and writes
///   `/tmp/portal-done`, which lets the guest power off. At unload it lists
///   the `execve`s.
/// - `module_arg=operations` (`make test-linux`, after the C checks of
///   host/checks.c, loaded first with `module_arg=handoff=operations`):
///   registers the interrupt `operations`. Its work runs in whatever task
///   noticed the flag; it queues itself again until that task is
///   portal-mapper, then runs the same operations and writes
///   `/tmp/portal-done`. The C checks own 0x1338 in that run.
///
/// Each result is a `linux: ...` line on standard error, in formats that
/// Tests/guests/linux/compare.sh holds against the guest's own `view:` lines.
enum LinuxTour {
    /// The path portal-mapper opens every 200 ms once the guest has printed its view.
    static let probePath = "/tmp/portal-probe-path-across-a-page"
    /// The file the guest's /init waits for; its text ends up on the console.
    static let doneFile = "/tmp/portal-done"
    /// A file the guest creates empty (`: > /tmp/portal-ready`) before the host starts.
    static let emptyFile = "/tmp/portal-ready"
    /// The file the tour writes and reads back.
    static let writtenFile = "/tmp/portal-swift-file"
    static let writtenText = "written by the Swift tour\n"
    /// How often the `operations` interrupt may queue itself again looking
    /// for portal-mapper's context before it gives up (it wakes every 200 ms).
    static let maxHops = 200

    /// What the run has done, shared by the vCPUs' handlers.
    struct Progress {
        var started = false
        var hops = 0
        /// Paths `execve`d, in order of their first call, with counts.
        var execs: [(path: String, count: Int)] = []
    }

    static let progress = Mutex(Progress())

    /// Writes one `linux: ...` line to standard error, where the plugin's lines go.
    static func say(_ line: String) {
        let text = Array("linux: \(line)\n".utf8)
        _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// `module_arg=linux`: the syscall-enter event notes `execve`s and starts the tour.
    /// - Parameter engine: The loaded engine.
    /// - Throws: `PortalError` when the engine refuses the attach.
    static func attachDemo(to engine: PortalEngine) throws(PortalError) {
        try engine.attach(.syscallEnter) { guest in
            let event = try await guest.readBytes(at: guest.call.arg1, count: SyscallEvent.size)
            let syscall = SyscallEvent(event, layout: guest.layout)
            switch syscall.name {
            case "execve":
                let path = (try? await guest.readString(at: syscall.arguments[0])) ?? "(unreadable)"
                progress.withLock { state in
                    if let index = state.execs.firstIndex(where: { $0.path == path }) {
                        state.execs[index].count += 1
                    } else {
                        state.execs.append((path, 1))
                    }
                }
            case "openat":
                guard try await guest.readString(at: syscall.arguments[1]) == probePath,
                      progress.withLock({ state in defer { state.started = true }; return !state.started })
                else { return 0 }
                await runEveryOperation(guest)
                await finish(guest, saying: "the Swift tour finished")
            default:
                break
            }
            return 0
        }
    }

    /// `module_arg=operations`: the interrupt that runs the operations in portal-mapper's context.
    /// - Parameter engine: The loaded engine.
    static func attachOperations(to engine: PortalEngine) throws(PortalError) {
        engine.registerInterrupt("operations") { guest in
            let current = try? await guest.process()
            guard current?.name == "portal-mapper" else {
                let hops = progress.withLock { state in
                    state.hops += 1
                    return state.hops
                }
                if hops <= maxHops, (try? guest.queueInterrupt("operations")) != nil { return }
                say("FAIL: the interrupt never ran in portal-mapper's context (\(hops) tries)")
                await finish(guest, saying: "operations gave up")
                return
            }
            say("operations ran in portal-mapper's context after \(progress.withLock { $0.hops }) other tasks")
            await runEveryOperation(guest)
            await finish(guest, saying: "checks and operations finished")
        }
    }

    /// The `execve`s noted, one line, at unload (`module_arg=linux`).
    static func reportExecs() {
        let execs = progress.withLock { $0.execs }
        guard !execs.isEmpty else { return }
        say("execve events: " + execs.map { "\($0.path) x\($0.count)" }.joined(separator: ", "))
    }

    /// Writes `/tmp/portal-done` (the guest then powers off), saying so.
    nonisolated(nonsending) static func finish(_ guest: Guest, saying text: String) async {
        do {
            try await guest.writeFile(path: doneFile, bytes: Array(text.utf8))
            say("done: wrote \(doneFile)")
        } catch {
            say("FAIL: could not write \(doneFile): \(error)")
        }
    }

    /// Runs `body`, or prints `FAIL what: error` and returns nil.
    nonisolated(nonsending) static func attempt<T>(_ what: String, _ body: () async throws -> T) async -> T? {
        do {
            return try await body()
        } catch {
            say("FAIL \(what): \(error)")
            return nil
        }
    }

    /// Every typed operation against the guest's long-lived processes
    /// (portal-mapper, the current task; nc, the daemon with fd gaps), each
    /// printed in the format of the guest's own view.
    /// - Parameter guest: A conversation in portal-mapper's context.
    nonisolated(nonsending) static func runEveryOperation(_ guest: Guest) async {
        // The kernel banner: linux_banner where kallsyms lists data symbols, else /proc/version.
        if let address = try? await guest.symbolAddress("linux_banner"),
           let banner = await attempt("banner", { try await guest.readString(at: address) }) {
            say("banner (READ_STR of linux_banner): \(firstLine(banner))")
        } else if let version = await attempt("banner", { try await guest.readFile(path: "/proc/version") }) {
            say("banner (READ_FILE of /proc/version): \(firstLine(String(decoding: version, as: UTF8.self)))")
        }
        if let address = await attempt("symbol do_exit", { try await guest.symbolAddress("do_exit") }) {
            say("symbol do_exit \(hex16(address))")
        }
        do {
            let address = try await guest.symbolAddress("portal_no_such_symbol")
            say("FAIL symbol portal_no_such_symbol: \(hexString(address)) for a symbol that does not exist")
        } catch {
            say("symbol portal_no_such_symbol: \(error)")
        }

        guard let processes = await attempt("processes", { try await guest.processes() }) else { return }
        say("processes \(processes.count)")
        for process in processes {
            say("ps \(process.pid) \(process.parentPID) \(process.uid) \(process.name)")
        }
        guard let mapper = processes.first(where: { $0.name == "portal-mapper" }),
              let daemon = processes.first(where: { $0.name == "nc" }) else {
            say("FAIL: no portal-mapper or nc among the processes")
            return
        }
        let mapperPID = UInt32(mapper.pid)

        // portal-mapper: details, memory map, heap, executable, arguments, environment.
        if let details = await attempt("process", { try await guest.process(pid: mapperPID) }) {
            say("process \(details.pid) ppid \(details.parentPID) uid \(details.uid) name \(details.name) map_count \(details.mappingCount)")
            if let argv = await attempt("readPointerArray", {
                try await guest.readPointerArray(at: details.stackStart &+ UInt64(guest.layout.wordBits / 8))
            }) {
                say("ptr_array " + argv.map { "\($0)|" }.joined())
            }
        }
        if let current = await attempt("process (current task)", { try await guest.process() }) {
            say("current task \(current.pid) \(current.name)")
        }
        if let maps = await attempt("mappings", { try await guest.mappings(pid: mapperPID) }) {
            say("mappings \(maps.count)")
            for map in maps { say("maps " + mapLine(map)) }
        }
        if let heap = await attempt("heap", { try await guest.heap(pid: mapperPID) }) {
            say("heap start_brk \(hex8(heap.start)) brk \(hex8(heap.end))")
            if let map = await attempt("mapping(containing:)", {
                try await guest.mapping(containing: heap.start, pid: mapperPID)
            }) {
                say("mapping containing start_brk: " + (map.map(mapLine) ?? "none"))
            }
        }
        if let path = await attempt("executable", { try await guest.executable(pid: mapperPID) }) {
            say("exe \(path)")
        }
        if let argv = await attempt("arguments", { try await guest.arguments() }) {
            say("argv " + argv.map { "\($0)|" }.joined())
        }
        if let words = await attempt("arguments(pid:)", { try await guest.arguments(pid: mapperPID) }) {
            say("procargs " + words.map { "[\($0)]" }.joined(separator: " "))
        }
        if let environment = await attempt("environment", { try await guest.environment(pid: mapperPID) }) {
            for entry in environment { say("environ \(entry.name)=\(entry.value) (name \(entry.name), value \(entry.value))") }
        }

        // The daemon: fds with gaps and a socket, its working directory.
        let daemonPID = UInt32(daemon.pid)
        if let fds = await attempt("fileDescriptors", { try await guest.fileDescriptors(pid: daemonPID) }) {
            for fd in fds { say("fd \(fd.number) \(fd.path)") }
        }
        if let cwd = await attempt("workingDirectory", { try await guest.workingDirectory(pid: daemonPID) }) {
            say("cwd \(cwd)")
        }

        // Files: a whole file, a part of one, an empty one, a missing one, one written and read back.
        if let passwd = await attempt("readFile /etc/passwd", { try await guest.readFile(path: "/etc/passwd") }) {
            for line in String(decoding: passwd, as: UTF8.self).split(separator: "\n").prefix(3) { say("passwd \(line)") }
        }
        if let part = await attempt("readFile part", { try await guest.readFile(path: "/etc/passwd", offset: 5, count: 9) }) {
            say("part of passwd, bytes 5 to 13: \(String(decoding: part, as: UTF8.self))")
        }
        if let empty = await attempt("readFile empty", { try await guest.readFile(path: emptyFile) }) {
            say("empty file \(emptyFile): \(empty.count) bytes")
        }
        do {
            let bytes = try await guest.readFile(path: "/tmp/portal-no-such-file")
            say("FAIL missing file: read \(bytes.count) bytes")
        } catch {
            say("missing file: \(error)")
        }
        if await attempt("writeFile", {
            try await guest.writeFile(path: writtenFile, bytes: Array(writtenText.utf8))
        }) != nil, let back = await attempt("readFile back", { try await guest.readFile(path: writtenFile) }) {
            say("wrote \(writtenFile) and read back \(String(decoding: back, as: UTF8.self).debugDescription)")
        }

        // Programs: EXEC with its wait status, a shell command with its output.
        if let status = await attempt("execute", {
            try await guest.execute(path: "/bin/busybox", arguments: ["busybox", "sh", "-c", "exit 3"])
        }) {
            say("exec /bin/busybox sh -c 'exit 3': wait status \(status), exit code \(status >> 8)")
        }
        if let result = await attempt("run", { try await guest.run(shellCommand: "head -n 2 /etc/passwd; exit 7") }) {
            say("run 'head -n 2 /etc/passwd; exit 7': exit code \(result.exitCode.map(String.init) ?? "none"), output \(result.outputText.debugDescription)")
        }
        // A kernel buffer of more than two regions, read back and compared
        // byte for byte; the bytes around the first region's end are shown.
        let copied = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 8) }
        if let address = await attempt("copyIntoKernel", { try await guest.copyIntoKernel(copied) }),
           let back = await attempt("copyIntoKernel read back", { try await guest.readBytes(at: address, count: copied.count) }) {
            let equal = zip(copied, back).filter { $0 == $1 }.count
            let around = back[4068..<4076].map { String($0, radix: 16) }.joined(separator: " ")
            say("copyIntoKernel: \(copied.count) bytes, read back \(equal) equal, bytes 4068 to 4075: \(around)")
        }
    }

    /// `START-END PERMS OFFSET NAME` as /proc/PID/maps prints it (the
    /// offset is the file offset of file mappings, 0 for the rest).
    static func mapLine(_ map: MemoryMapping) -> String {
        let offset = map.inode != 0 ? map.fileOffset : 0
        let line = "\(hex8(map.start))-\(hex8(map.end)) \(map.permissions) \(hex8(offset))"
        return map.name.isEmpty ? line : "\(line) \(map.name)"
    }

    /// Lowercase hex, at least 8 digits (as /proc/PID/maps).
    static func hex8(_ value: UInt64) -> String { padded(value, 8) }
    /// Lowercase hex, 16 digits (as /proc/kallsyms on 64-bit).
    static func hex16(_ value: UInt64) -> String { padded(value, 16) }

    static func padded(_ value: UInt64, _ width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    static func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    }
}

/// The guest module's `struct syscall_event` on 64-bit guests (PROTOCOL.md §6).
struct SyscallEvent {
    static let size = 160
    /// args[0..5].
    var arguments: [UInt64]
    /// The syscall's name (`execve`, `openat`, `sethostname`).
    var name: String

    init(_ bytes: [UInt8], layout: GuestLayout) {
        arguments = (0..<6).map { index in
            bytes.withUnsafeBytes { layout.load(UInt64.self, from: $0.baseAddress! + index * 8) }
        }
        let field = bytes[109..<min(bytes.count, 157)]
        name = String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// `value` as the guest's tools print addresses: 0x and lower-case hex digits.
private func hexString(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
