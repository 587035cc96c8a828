@testable import PortalEngine
import PortalTestSupport
import PortalOperations
import Testing

@Suite("Typed operations against the mock guest, every layout")
struct OperationTests {
    @Test(arguments: allLayouts, [1, 72, 73, 145])
    func processesArePagedOnTheSkipCount(layout: GuestLayout, count: Int) throws {
        let world = processWorld(count: count)
        let guest = MockGuest(layout: layout, world: world)
        let listed = try converse(guest) { try await $0.processes() }.get()
        let expected = world.processes.map {
            ProcessSummary(pid: UInt64($0.pid), parentPID: UInt64($0.parentPID), createTime: $0.createTime,
                           uid: $0.uid, gid: $0.gid, effectiveUID: $0.effectiveUID, effectiveGID: $0.effectiveGID,
                           name: String($0.name.prefix(15)))
        }
        #expect(listed == expected)
        let skips = (0..<((count + 71) / 72)).map { "OSI_PROC_ALL pid=-1 addr=\($0 * 72) size=0" }
        #expect(guest.served == skips)
    }

    @Test(arguments: allLayouts)
    func oneProcessHasAllItsFields(layout: GuestLayout) throws {
        var world = processWorld(count: 3)
        world.processes[1].heap = (0x60_0000, 0x62_1000)
        world.processes[1].executable = "/usr/bin/a very long name"
        let guest = MockGuest(layout: layout, world: world)
        let (details, exe, heap) = try converse(guest) { g in
            (try await g.process(pid: 101), try await g.executable(pid: 101), try await g.heap(pid: 101))
        }.get()
        let expected: [UInt64] = [
            0xffff_0000_6500, 0x5065, 101, 100, 208, 101_000_007, 0, 0x60_0000, 0x62_1000,
            0x7ffd_0000, 0x40_0000, 0x41_0000, 0x42_0000, 0x43_0000, 0, 0, 0x7ffd_1000, 0x7ffd_1400, 0,
            0x7f00_0000, 0xc000_0000, 1, 2, 0xffff_fffe, 7, 101_000_008,
        ]
        #expect(details.fields == expected)
        #expect(details.name == "a-very-long-nam")
        #expect(exe == "/usr/bin/a very long name")
        #expect(heap == HeapBounds(start: 0x60_0000, end: 0x62_1000))
        #expect(guest.served == ["OSI_PROC pid=101 addr=0 size=0", "OSI_PROC_EXE pid=101 addr=0 size=0",
                                 "OSI_PROC_MEM pid=101 addr=0 size=0"])
    }

    @Test(arguments: allLayouts)
    func missingTasksAreNamedInTheError(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: processWorld(count: 2))
        #expect(failure(converse(guest) { try await $0.process(pid: 4242) })
                == "OSI_PROC for pid 4242: the guest answered READ_FAIL: no such task")
        #expect(failure(converse(guest) { try await $0.executable() })
                == "OSI_PROC_EXE for the current task: the guest answered READ_FAIL: no such task, or it has no executable file")
        #expect(failure(converse(guest) { try await $0.heap(pid: 101) })
                == "OSI_PROC_MEM for pid 101: the guest answered READ_FAIL: no such task, or it has no memory map")
        #expect(failure(converse(guest) { try await $0.mappings(pid: 9) })
                == "OSI_MAPPINGS for pid 9: the guest answered READ_FAIL: no such task")
        #expect(failure(converse(guest) { try await $0.fileDescriptors(pid: 9) })
                == "READ_FDS for pid 9: the guest answered READ_FAIL: no such task")
        #expect(failure(converse(guest) { try await $0.arguments(pid: 101) })
                == "READ_PROCARGS for pid 101: the guest answered READ_FAIL: no such task, or it has no argv area (UNKNOWN_PROCARGS)")
        #expect(failure(converse(guest) { try await $0.environment(pid: 101) })
                == "READ_PROCENV for pid 101: the guest answered READ_FAIL: no such task, or its environment cannot be read (UNKNOWN_PROCENV)")
    }

    @Test(arguments: allLayouts, [28, 29, 57])
    func mappingsArePagedWithNamesFromThePool(layout: GuestLayout, count: Int) throws {
        let world = mappingWorld(count: count)
        let guest = MockGuest(layout: layout, world: world)
        let (mappings, hit, miss) = try converse(guest) { g in
            (try await g.mappings(), try await g.mapping(containing: 0x41_0000 + 0x3fff, pid: 7),
             try await g.mapping(containing: 0x41_0000 + 0x4000, pid: 7))
        }.get()
        #expect(mappings == world.processes[0].mappings)
        #expect(mappings.map(\.permissions).prefix(5) == ["r--p", "rw-p", "r-xp", "rw-s", "rwxp"])
        #expect(mappings[0].deviceMajor == 8 && mappings[0].deviceMinor == 1 && mappings[0].inode == 1000)
        #expect(mappings[2].name == "" && mappings[3].name == "[anon:scratch]")
        #expect(hit == mappings[1])
        #expect(miss == nil)
        let pages = (count + 27) / 28
        let skips = (0..<pages).map { "OSI_MAPPINGS pid=-1 addr=\($0 * 28) size=0" }
        #expect(Array(guest.served.prefix(pages)) == skips)
        #expect(guest.served.count == 3 * pages)
    }

    @Test(arguments: allLayouts)
    func fileDescriptorsArePagedOnTheResumeFD(layout: GuestLayout) throws {
        var world = processWorld(count: 1)
        // 0, 1, 2, then every third fd from 5: gaps everywhere, 130 fds in all.
        let numbers: [Int32] = [0, 1, 2] + (0..<127).map { 5 + Int32($0) * 3 }
        world.processes[0].fileDescriptors = numbers.map { ($0, $0 < 3 ? "/dev/console" : "socket:[\(9000 + $0)]") }
        world.processes[0].workingDirectory = "/var/run/a dir"
        let guest = MockGuest(layout: layout, world: world)
        let (fds, cwd) = try converse(guest) { g in
            (try await g.fileDescriptors(pid: 100), try await g.workingDirectory())
        }.get()
        #expect(fds == world.processes[0].fileDescriptors.map { FileDescriptor(number: $0.0, path: $0.1) })
        #expect(cwd == "/var/run/a dir")
        // Page 2 resumes at the fd the reply named (5 + 124 * 3), not at fd 127.
        #expect(guest.served == ["READ_FDS pid=100 addr=0 size=0", "READ_FDS pid=100 addr=377 size=0",
                                 "READ_FDS pid=-1 addr=\(layout.wordBits == 64 ? -100 : 4_294_967_196) size=0"])
    }

    @Test(arguments: allLayouts)
    func argumentsKeepTheirBoundariesForTheCurrentTask(layout: GuestLayout) throws {
        var world = processWorld(count: 2)
        let argv = ["/bin/httpd", "-c", "a file with spaces.conf", "", "x=y"]
        world.processes[0].arguments = argv
        world.processes[1].arguments = argv
        world.processes[1].environment = ["PATH=/bin:/sbin", "OPTS=a=b=c", "EMPTY=", "NOEQUALS"]
        let guest = MockGuest(layout: layout, world: world)
        let (own, other, environment) = try converse(guest) { g in
            (try await g.arguments(), try await g.arguments(pid: 101), try await g.environment(pid: 101))
        }.get()
        #expect(own == argv)
        #expect(other == ["/bin/httpd", "-c", "a", "file", "with", "spaces.conf", "x=y"])
        #expect(environment == [
            EnvironmentVariable(name: "PATH", value: "/bin:/sbin"), EnvironmentVariable(name: "OPTS", value: "a=b=c"),
            EnvironmentVariable(name: "EMPTY", value: ""), EnvironmentVariable(name: "NOEQUALS", value: ""),
        ])
        let start = 0x40_0ff0
        let length = argv.reduce(0) { $0 + $1.utf8.count + 1 }
        #expect(guest.served == ["OSI_PROC pid=-1 addr=0 size=0", "READ pid=-1 addr=\(start) size=\(length)",
                                 "READ_PROCARGS pid=101 addr=0 size=0", "READ_PROCENV pid=101 addr=0 size=0"])
    }

    @Test(arguments: allLayouts)
    func filesAreReadThroughHandlesAndTellMissingFromEmpty(layout: GuestLayout) throws {
        var world = World()
        let big = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        world.files = ["/etc/big": big, "/etc/empty": [], "/proc/self/maps": Array("00400000 r-xp\n".utf8)]
        world.vfsReadRefused = ["/proc/self/maps"]
        let guest = MockGuest(layout: layout, world: world)
        let (whole, part, empty, maps) = try converse(guest) { g in
            (try await g.readFile(path: "/etc/big"), try await g.readFile(path: "/etc/big", offset: 4100, count: 10),
             try await g.readFile(path: "/etc/empty"), try await g.readFile(path: "/proc/self/maps"))
        }.get()
        #expect(whole == big)
        #expect(part == Array(big[4100..<4110]))
        #expect(empty == [])
        #expect(maps == Array("00400000 r-xp\n".utf8))
        #expect(failure(converse(guest) { try await $0.readFile(path: "/etc/missing") })
                == "VFS_OPEN for path /etc/missing: the guest cannot open the file (errno 2 ENOENT)")
        #expect(guest.served.filter { $0.hasPrefix("READ_FILE") } == ["READ_FILE pid=-1 addr=0 size=4071"])
        #expect(guest.served.filter { $0.hasPrefix("VFS_READ") }.count == 3 + 2 + 1 + 1)
    }

    @Test(arguments: allLayouts)
    func withoutVFSOpsReadFileCannotTellMissingFromEmpty(layout: GuestLayout) throws {
        let names = OpTable.standard.names.filter { !$0.hasPrefix("VFS_") }
        var world = World()
        world.files = ["/etc/passwd": Array("root:x:0:0::/root:/bin/sh\n".utf8)]
        let guest = MockGuest(layout: layout, world: world, ops: OpTable(names: names))
        #expect(try converse(guest, ops: OpTable(names: names)) { try await $0.readFile(path: "/etc/passwd") }.get()
                == Array("root:x:0:0::/root:/bin/sh\n".utf8))
        #expect(failure(converse(guest, ops: OpTable(names: names)) { try await $0.readFile(path: "/etc/nope") })
                == "READ_FILE for path /etc/nope: the guest answered READ_FAIL at offset 0: the file is missing, unreadable, or has no bytes there (READ_FILE cannot tell which; this op table has no VFS_OPEN)")
    }

    @Test(arguments: allLayouts)
    func filesAreWrittenInChunksThatFitTheRegion(layout: GuestLayout) throws {
        let guest = MockGuest(layout: layout, world: World())
        let bytes = (0..<9000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let path = "/tmp/out.bin"  // 12 bytes + NUL: 4059 bytes fit each chunk
        try converse(guest) { try await $0.writeFile(path: path, bytes: bytes, offset: 100) }.get()
        #expect(guest.world.files[path] == [UInt8](repeating: 0, count: 100) + bytes)
        #expect(guest.served == ["WRITE_FILE pid=-1 addr=100 size=4059", "WRITE_FILE pid=-1 addr=4159 size=4059",
                                 "WRITE_FILE pid=-1 addr=8218 size=882"])
        #expect(failure(converse(guest) { try await $0.writeFile(path: "/etc/ro", bytes: [1]) })
                == "WRITE_FILE for path /etc/ro: the guest answered WRITE_FAIL: the file cannot be opened or written at offset 0")
        // Nothing to write sends nothing (size 0 would mean a whole region to the guest).
        let before = guest.served.count
        try converse(guest) { try await $0.writeFile(path: "/tmp/empty", bytes: []) }.get()
        #expect(guest.served.count == before && guest.world.files["/tmp/empty"] == nil)
        let long = "/tmp/" + String(repeating: "d", count: 251)
        #expect(failure(converse(guest) { try await $0.writeFile(path: long, bytes: [1]) })
                == "WRITE_FILE for path \(long): a path must have 1 to 255 bytes and no NUL, this one has 256")
        // Past the end of a file that exists: no bytes, not an error.
        #expect(try converse(guest) { try await $0.readFile(path: path, offset: 9100, count: 10) }.get() == [])
    }

    @Test(arguments: allLayouts)
    func programsRunAndShellCommandsReturnTheirOutput(layout: GuestLayout) throws {
        var world = World()
        world.shellCommands = ["uname -a; ls /nope": (2 << 8, Array("Linux\nls: /nope: No such file\n".utf8))]
        let guest = MockGuest(layout: layout, world: world)
        let (status, result) = try converse(guest) { g in
            (try await g.execute(path: "/bin/true", arguments: [], environment: ["A=1"], wait: false),
             try await g.run(shellCommand: "uname -a; ls /nope"))
        }.get()
        #expect(status == 0)
        #expect(result.exitCode == 2)
        #expect(result.outputText == "Linux\nls: /nope: No such file\n")
        #expect(guest.world.files.isEmpty)
        #expect(guest.executed.count == 3)
        #expect(guest.executed[0].0 == "/bin/true" && guest.executed[0].1 == ["/bin/true"]
                && guest.executed[0].2 == ["A=1"] && !guest.executed[0].3)
        let outputPath = guest.executed[2].1[2]
        #expect(guest.executed[2].1 == ["/bin/rm", "-f", outputPath] && outputPath.hasPrefix("/tmp/portal-run-"))
        #expect(guest.executed[1].1 == ["/bin/sh", "-c", "{ uname -a; ls /nope\n} > \(outputPath) 2>&1"])
        #expect(failure(converse(guest) { try await $0.execute(path: "/bin/missing") })
                == "EXEC for path /bin/missing: the usermode helper could not run the program (errno 2 ENOENT)")
        #expect(failure(converse(guest) { try await $0.execute(path: "/bin/true", arguments: Array(repeating: "x", count: 16)) })
                == "EXEC for path /bin/true: EXEC takes at most 15 arguments and 15 environment strings, got 16 and 0")
    }

    @Test(arguments: allLayouts)
    func kernelSymbolsPointerArraysAndBuffers(layout: GuestLayout) throws {
        var world = World()
        world.symbols = ["printk": layout.wordBits == 64 ? 0xffff_ffff_8100_1000 : 0xc010_1000]
        let guest = MockGuest(layout: layout, world: world)
        let word = UInt64(layout.wordBits / 8)
        guest.map(0x8000, count: 0x1000)
        let strings = ["/bin/sh", "-c", String(repeating: "z", count: 200)]
        for (index, string) in strings.enumerated() {
            let at = 0x8400 + UInt64(index) * 0x100
            guest.store(Array(string.utf8) + [0], at: at)
            guest.store(word == 8 ? layout.bytes(of: at) : layout.bytes(of: UInt32(at)), at: 0x8000 + UInt64(index) * word)
        }
        let (symbol, array, buffer) = try converse(guest) { g in
            (try await g.symbolAddress("printk"), try await g.readPointerArray(at: 0x8000),
             try await g.copyIntoKernel(Array("needle".utf8) + [0]))
        }.get()
        #expect(symbol == world.symbols["printk"])
        #expect(array == ["/bin/sh", "-c", String(repeating: "z", count: 127)])
        #expect(guest.bytes(at: buffer, count: 7) == Array("needle".utf8) + [0])
        #expect(failure(converse(guest) { try await $0.symbolAddress("no_such_symbol") })
                == "KALLSYMS_LOOKUP for symbol no_such_symbol: the guest knows no such symbol (it answered address 0)")
    }

    /// COPY_BUF_GUEST's size is the total length (not clamped to the
    /// region), its payload the first region of bytes; WRITEs at the
    /// buffer's address plus the offset carry the rest, one region each.
    @Test(arguments: allLayouts)
    func copyIntoKernelBeyondOneRegion(layout: GuestLayout) throws {
        let region = 4072
        let firstBuffer: UInt64 = layout.wordBits == 64 ? 0xffff_8880_0000_0000 : 0xc800_0000
        for count in [1, region, region + 1, 3 * region + 5, Guest.maxKernelBufferBytes] {
            let guest = MockGuest(layout: layout, world: World())
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 8) }
            let buffer = try converse(guest) { try await $0.copyIntoKernel(bytes) }.get()
            #expect(buffer == firstBuffer)
            #expect(guest.bytes(at: buffer, count: count) == bytes, "\(count) bytes")
            let writes = (count - 1) / region
            var expected = ["COPY_BUF_GUEST pid=-1 addr=0 size=\(count)"]
            for index in 0..<writes {
                let offset = (index + 1) * region
                expected.append("WRITE pid=-1 addr=\(Int64(bitPattern: buffer + UInt64(offset))) size=\(min(region, count - offset))")
            }
            #expect(guest.served == expected, "\(count) bytes")
        }
    }

    @Test(arguments: allLayouts)
    func copyIntoKernelRefusalsAndAFailedWrite(layout: GuestLayout) {
        let guest = MockGuest(layout: layout, world: World())
        #expect(failure(converse(guest) { try await $0.copyIntoKernel([]) })
                == "COPY_BUF_GUEST for 0 bytes: a kernel buffer takes 1 to 1048576 bytes (1 MiB), not 0")
        #expect(failure(converse(guest) { try await $0.copyIntoKernel([UInt8](repeating: 1, count: (1 << 20) + 1)) })
                == "COPY_BUF_GUEST for 1048577 bytes: a kernel buffer takes 1 to 1048576 bytes (1 MiB), not 1048577")
        #expect(guest.served.isEmpty)
        var writesSeen = 0
        guest.tamper = { op, _, answer, _ in
            guard op == "WRITE" else { return }
            writesSeen += 1
            if writesSeen == 2 { answer.op = ResponseCode.writeFail.rawValue }
        }
        let (buffer, failedAt) = layout.wordBits == 64 ? ("0xffff888000000000", "0xffff888000001fd0")
            : ("0xc8000000", "0xc8001fd0")
        #expect(failure(converse(guest) { try await $0.copyIntoKernel([UInt8](repeating: 7, count: 3 * 4072 + 5)) })
                == "WRITE for the kernel buffer at \(buffer): the guest answered WRITE_FAIL at \(failedAt) after 8144 of 12221 bytes were copied (COPY_BUF_GUEST allocated the buffer; the guest never frees it)")
        #expect(guest.served.count == 3)
    }
}

@Suite("The op table follows the guest module")
struct OpListHeaderTests {
    /// The guest module's op list header, with an op inserted before the
    /// OSI ops so that every number after it shifts by one.
    static let header = """
        #define HYPER_OP_LIST(X) \\
            X(read, READ) \\
            X(write, WRITE) \\
            X(read_str, READ_STR) \\
            X(new_thing, NEW_THING) \\
            X(osi_proc, OSI_PROC) \\
            X(osi_proc_all, OSI_PROC_ALL) \\
            X(read_fds, READ_FDS)

        """

    @Test func theModulesOwnHeaderIsAnOpTable() throws {
        let table = try OpTable(parsing: Self.header)
        #expect(table.names == ["READ", "WRITE", "READ_STR", "NEW_THING", "OSI_PROC", "OSI_PROC_ALL", "READ_FDS"])
        #expect(table.number(of: "OSI_PROC_ALL") == 6)
    }

    @Test(arguments: allLayouts)
    func typedOperationsFindRenumberedOpsByName(layout: GuestLayout) throws {
        let table = try OpTable(parsing: Self.header)
        let guest = MockGuest(layout: layout, world: processWorld(count: 73), ops: table)
        let listed = try converse(guest, ops: table) { try await $0.processes() }.get()
        #expect(listed.count == 73)
        #expect(guest.served == ["OSI_PROC_ALL pid=-1 addr=0 size=0", "OSI_PROC_ALL pid=-1 addr=72 size=0"])
        // An op the table lacks is named, and costs no round trip.
        #expect(failure(converse(guest, ops: table) { try await $0.mappings() })
                == "OSI_MAPPINGS for the current task: the op table has no op OSI_MAPPINGS; give the guest module's op list with ops=")
        #expect(guest.served.count == 2)
    }
}

@Suite("Every operation in one report")
struct ReportTests {
    @Test(arguments: allLayouts)
    func everyOperationReportsALine(layout: GuestLayout) throws {
        var world = processWorld(count: 2)
        world.processes[0].executable = "/bin/busybox"
        world.processes[0].heap = (0x60_0000, 0x62_1000)
        world.processes[0].mappings = mappingWorld(count: 2).processes[0].mappings
        world.processes[0].fileDescriptors = [(0, "/dev/console"), (4, "socket:[77]")]
        world.processes[0].arguments = ["/bin/sh", "-c", "a b"]
        world.processes[0].environment = ["HOME=/", "X=a=b"]
        world.files = ["/proc/version": Array("Linux version 6.1.0 (gcc)\n".utf8)]
        world.symbols = ["printk": 0xc010_1000]
        world.shellCommands = ["echo portal-ok; id -u": (0, Array("portal-ok\n0\n".utf8))]
        let guest = MockGuest(layout: layout, world: world)
        let lines = try converse(guest) { g in
            var lines: [String] = []
            await g.reportEveryOperation { lines.append($0) }
            return lines
        }.get()
        let kernelBuffer = layout.wordBits == 64 ? "0xffff888000000000" : "0xc8000000"
        #expect(lines == [
            "processes: 2: 100 init, 101 a-very-long-nam",
            "process: pid 100 ppid 0 init uid 0 maps 2",
            "executable: /bin/busybox",
            "heap: 0x600000-0x621000",
            "mappings: 2: 0x400000-0x403000 r--p /usr/sbin/httpd, 0x410000-0x414000 rw-p [heap]",
            "fds: 2: 0 /dev/console, 4 socket:[77]",
            "cwd: /",
            "arguments: [/bin/sh] [-c] [a b]",
            "arguments of pid 1: FAILED: READ_PROCARGS for pid 1: the guest answered READ_FAIL: no such task, or it has no argv area (UNKNOWN_PROCARGS)",
            "environment: 2: HOME=/ X=a=b",
            "read /proc/version: Linux version 6.1.0 (gcc)",
            "read missing file: FAILED: VFS_OPEN for path /nonexistent/portal: the guest cannot open the file (errno 2 ENOENT)",
            "write /tmp/portal-ops: \"written by portal\\n\"",
            "run: exit 0 output \"portal-ok\\n0\\n\"",
            "symbol printk: 0xc0101000",
            "kernel buffer: \(kernelBuffer)",
            "done",
        ])
    }
}
