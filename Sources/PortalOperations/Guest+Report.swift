import PortalEngine

/// Every typed operation once, for end-to-end checks against a real guest.
extension Guest {
    /// Runs every typed operation once against the current task (and pid 1
    /// for READ_PROCARGS) and reports one line each: `NAME: RESULT` or
    /// `NAME: FAILED: why`, then `done`. A failure is a line, not the end.
    /// It writes `/tmp/portal-ops` and runs `echo portal-ok; id -u` in the
    /// guest. About 30 round trips plus the paged lists.
    /// - Parameter report: Receives each line, on the vCPU's thread.
    nonisolated(nonsending) public func reportEveryOperation(_ report: (String) -> Void) async {
        await Self.line(report, "processes", { try await processes() }) { list in
            "\(list.count): " + list.prefix(8).map { "\($0.pid) \($0.name)" }.joined(separator: ", ")
        }
        await Self.line(report, "process", { try await process() }) {
            "pid \($0.pid) ppid \($0.parentPID) \($0.name) uid \($0.uid) maps \($0.mappingCount)"
        }
        await Self.line(report, "executable", { try await executable() }) { $0 }
        await Self.line(report, "heap", { try await heap() }) { "\(hex($0.start))-\(hex($0.end))" }
        await Self.line(report, "mappings", { try await mappings() }) { maps in
            "\(maps.count): " + maps.prefix(4).map { "\(hex($0.start))-\(hex($0.end)) \($0.permissions) \($0.name)" }
                .joined(separator: ", ")
        }
        await Self.line(report, "fds", { try await fileDescriptors() }) { fds in
            "\(fds.count): " + fds.prefix(8).map { "\($0.number) \($0.path)" }.joined(separator: ", ")
        }
        await Self.line(report, "cwd", { try await workingDirectory() }) { $0 }
        await Self.line(report, "arguments", { try await arguments() }) { $0.map { "[\($0)]" }.joined(separator: " ") }
        await Self.line(report, "arguments of pid 1", { try await arguments(pid: 1) }) { $0.joined(separator: " ") }
        await Self.line(report, "environment", { try await environment() }) { env in
            "\(env.count): " + env.prefix(6).map { "\($0.name)=\($0.value)" }.joined(separator: " ")
        }
        await Self.line(report, "read /proc/version", { try await readFile(path: "/proc/version") }) {
            String(decoding: $0.prefix(80), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        }
        await Self.line(report, "read missing file", { try await readFile(path: "/nonexistent/portal") }) {
            "\($0.count) bytes"
        }
        await Self.line(report, "write /tmp/portal-ops", {
            try await writeFile(path: "/tmp/portal-ops", bytes: Array("written by portal\n".utf8))
            return try await readFile(path: "/tmp/portal-ops")
        }) { String(decoding: $0, as: UTF8.self).debugDescription }
        await Self.line(report, "run", { try await run(shellCommand: "echo portal-ok; id -u") }) {
            "exit \($0.exitCode.map(String.init) ?? "signal") output \($0.outputText.debugDescription)"
        }
        await Self.line(report, "symbol printk", { try await symbolAddress("printk") }) { hex($0) }
        await Self.line(report, "kernel buffer", { try await copyIntoKernel(Array("portal\u{0}".utf8)) }) {
            hex($0)
        }
        report("done")
    }

    /// One operation's line: its result as `show` prints it, or why it failed.
    nonisolated(nonsending) private static func line<T>(_ report: (String) -> Void, _ name: String,
                                                        _ body: () async throws -> T,
                                                        _ show: (T) -> String) async {
        do {
            report("\(name): \(show(try await body()))")
        } catch {
            report("\(name): FAILED: \(error)")
        }
    }
}
