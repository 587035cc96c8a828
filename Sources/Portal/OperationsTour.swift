import PortalEngine
import PortalOperations

/// `demo=operations`: runs every typed guest operation once against a real
/// guest module and prints one line per result, for end-to-end checks
/// against a Linux guest (`portal: operations: NAME: RESULT`, or
/// `portal: operations: NAME: FAILED: why`, then `portal: operations: done`).
///
/// It runs as the interrupt `operations`, queued at load: the guest module
/// serves it at its first syscall after boot, in that task's context, so
/// "the current task" is whichever process made that syscall.
enum OperationsTour {
    static let interruptName = "operations"

    /// Registers and queues the interrupt.
    /// - Parameters:
    ///   - engine: The plugin's engine.
    ///   - sink: Where the result lines go.
    static func attach(to engine: PortalEngine, sink: LogSink) {
        engine.registerInterrupt(interruptName) { guest in
            await run(guest, sink: sink)
        }
        engine.queueInterrupt(interruptName)
    }

    /// Every operation, each on its own: a failure is a line, not the end.
    nonisolated(nonsending) static func run(_ guest: Guest, sink: LogSink) async {
        await line(sink, "processes", { try await guest.processes() }) { list in
            "\(list.count): " + list.prefix(8).map { "\($0.pid) \($0.name)" }.joined(separator: ", ")
        }
        await line(sink, "process", { try await guest.process() }) {
            "pid \($0.pid) ppid \($0.parentPID) \($0.name) uid \($0.uid) maps \($0.mappingCount)"
        }
        await line(sink, "executable", { try await guest.executable() }) { $0 }
        await line(sink, "heap", { try await guest.heap() }) { "\(hexString($0.start))-\(hexString($0.end))" }
        await line(sink, "mappings", { try await guest.mappings() }) { maps in
            "\(maps.count): " + maps.prefix(4).map { "\(hexString($0.start))-\(hexString($0.end)) \($0.permissions) \($0.name)" }
                .joined(separator: ", ")
        }
        await line(sink, "fds", { try await guest.fileDescriptors() }) { fds in
            "\(fds.count): " + fds.prefix(8).map { "\($0.number) \($0.path)" }.joined(separator: ", ")
        }
        await line(sink, "cwd", { try await guest.workingDirectory() }) { $0 }
        await line(sink, "arguments", { try await guest.arguments() }) { $0.map { "[\($0)]" }.joined(separator: " ") }
        await line(sink, "arguments of pid 1", { try await guest.arguments(pid: 1) }) { $0.joined(separator: " ") }
        await line(sink, "environment", { try await guest.environment() }) { env in
            "\(env.count): " + env.prefix(6).map { "\($0.name)=\($0.value)" }.joined(separator: " ")
        }
        await line(sink, "read /proc/version", { try await guest.readFile(path: "/proc/version") }) {
            String(decoding: $0.prefix(80), as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        }
        await line(sink, "read missing file", { try await guest.readFile(path: "/nonexistent/portal") }) { "\($0.count) bytes" }
        await line(sink, "write /tmp/portal-ops", {
            try await guest.writeFile(path: "/tmp/portal-ops", bytes: Array("written by portal\n".utf8))
            return try await guest.readFile(path: "/tmp/portal-ops")
        }) { String(decoding: $0, as: UTF8.self).debugDescription }
        await line(sink, "run", { try await guest.run(shellCommand: "echo portal-ok; id -u") }) {
            "exit \($0.exitCode.map(String.init) ?? "signal") output \($0.outputText.debugDescription)"
        }
        await line(sink, "symbol printk", { try await guest.symbolAddress("printk") }) { hexString($0) }
        await line(sink, "kernel buffer", { try await guest.copyIntoKernel(Array("portal\u{0}".utf8)) }) { hexString($0) }
        sink.write("operations: done")
    }

    /// One operation's line: its result as `show` prints it, or why it failed.
    nonisolated(nonsending) private static func line<T>(_ sink: LogSink, _ name: String,
                                                        _ body: () async throws -> T,
                                                        _ show: (T) -> String) async {
        do {
            sink.write("operations: \(name): \(show(try await body()))")
        } catch {
            sink.write("operations: \(name): FAILED: \(error)")
        }
    }
}
