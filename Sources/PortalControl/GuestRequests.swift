import PortalEngine
import Synchronization

/// The guest side of a command: an async body run inside the guest's next
/// interrupt conversation, whose value becomes the command's `return`.
package struct GuestWork: Sendable {
    /// The work itself; it may await any guest operation. `nonisolated(nonsending)`
    /// like the engine's handlers, so its awaits cost no executor switch.
    package typealias Body = nonisolated(nonsending) @Sendable (Guest) async throws -> JSONValue

    /// Seconds the client waits for the guest before the request fails.
    package let timeout: Double
    /// The work.
    package let body: Body

    /// Creates guest work.
    /// - Parameters:
    ///   - timeout: seconds before the client gets a timeout error.
    ///   - body: what to do in the guest.
    package init(timeout: Double, body: @escaping Body) {
        self.timeout = timeout
        self.body = body
    }
}

/// One command waiting for, or running in, the guest. Its state moves
/// once from waiting to running to finished, or to abandoned (timed out,
/// or its client left): whichever side changes it first wins, so a late
/// result is dropped and a request whose client left is never run.
package final class GuestRequest: Sendable {
    /// The states, as the atomic holds them.
    enum State: Int {
        case waiting = 0, running, finished, abandoned
    }

    /// The connection the reply goes back on.
    let connectionID: UInt64
    /// The request's `id`, echoed in the reply.
    let requestID: JSONValue?
    /// The command's name, for log lines.
    let command: String
    let work: GuestWork
    /// Monotonic nanoseconds after which the client is told the guest did not answer.
    let deadline: UInt64
    private let state = Atomic<Int>(State.waiting.rawValue)

    init(connectionID: UInt64, requestID: JSONValue?, command: String, work: GuestWork, now: UInt64) {
        self.connectionID = connectionID
        self.requestID = requestID
        self.command = command
        self.work = work
        deadline = now &+ UInt64(work.timeout * 1e9)
    }

    /// The guest takes it up; false if it was abandoned meanwhile.
    func begin() -> Bool { move(from: .waiting, to: .running) }

    /// The guest finished it; false if it was abandoned while it ran (the
    /// result is dropped).
    func finish() -> Bool { move(from: .running, to: .finished) }

    /// Whether the client gave up on it or left.
    var isAbandoned: Bool { state.load(ordering: .acquiring) == State.abandoned.rawValue }

    /// Whether it still waits for the guest.
    var isWaiting: Bool { state.load(ordering: .acquiring) == State.waiting.rawValue }

    /// The client gave up or left. Returns the state it was abandoned in,
    /// or nil if it had finished already.
    func abandon() -> State? {
        if move(from: .waiting, to: .abandoned) { return .waiting }
        if move(from: .running, to: .abandoned) { return .running }
        return nil
    }

    private func move(from: State, to: State) -> Bool {
        state.compareExchange(expected: from.rawValue, desired: to.rawValue, ordering: .acquiringAndReleasing)
            .exchanged
    }
}

/// Hands requests to the guest through one named interrupt and their
/// results back to whoever waits for them.
///
/// Each request becomes work in the guest's next PORTAL_INTERRUPT
/// conversation: the interrupt `portal-control` is queued once for any
/// number of requests, and its handler runs every request still wanted,
/// in arrival order, one after the other in that one conversation.
package final class GuestRequestQueue: Sendable {
    /// The interrupt name the control plane registers with the engine.
    package static let interruptName = "portal-control"

    private let engine: PortalEngine
    private let queue = Lock<[GuestRequest]>([])
    /// Receives each finished request's result, on the vCPU thread that ran
    /// it; set once by the server before it serves.
    nonisolated(unsafe) var deliver: @Sendable (GuestRequest, Result<JSONValue, QMPError>) -> Void = { _, _ in }

    /// Registers the interrupt handler with `engine`.
    /// - Parameter engine: the engine whose interrupt conversations run the requests.
    init(engine: PortalEngine) {
        self.engine = engine
        engine.registerInterrupt(Self.interruptName) { guest in try await self.runWaiting(guest) }
    }

    /// Removes the interrupt handler (at unload).
    package func close() {
        engine.unregisterInterrupt(Self.interruptName)
    }

    /// Requests that may wait for the guest at once: a guest that never
    /// runs its interrupt conversation must not let clients grow the queue
    /// without bound.
    package static let limit = 1024

    /// Requests waiting for the guest's next interrupt conversation (not
    /// those whose client gave up).
    package var waitingCount: Int { queue.withLock { $0.lazy.filter(\.isWaiting).count } }

    /// Queues `request` for the guest's next interrupt conversation.
    /// Requests abandoned meanwhile are dropped from the queue first.
    /// - Parameter request: the request.
    /// - Returns: nil if queued, else why not.
    func submit(_ request: GuestRequest) -> String? {
        let queued = queue.withLock { queue -> Bool in
            queue.removeAll(where: \.isAbandoned)
            guard queue.count < Self.limit else { return false }
            queue.append(request)
            return true
        }
        guard queued else {
            return "\(Self.limit) requests are already waiting for the guest's interrupt conversation; try again later"
        }
        do {
            try engine.queueInterrupt(Self.interruptName)
        } catch {
            _ = request.abandon()
            return "the request could not be queued for the guest: \(error)"
        }
        return nil
    }

    private func takeNext() -> GuestRequest? {
        queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
    }

    /// The interrupt handler: every waiting request in turn. A guest
    /// operation failing fails its request only; the conversation itself
    /// ending (the guest abandoned it, or the plugin unloads) fails the
    /// running request and leaves the rest for the next window.
    nonisolated(nonsending) private func runWaiting(_ guest: Guest) async throws {
        while let request = takeNext() {
            guard request.begin() else { continue }
            let result: Result<JSONValue, QMPError>
            var conversationOver = false
            do {
                result = .success(try await request.work.body(guest))
            } catch let error as QMPError {
                result = .failure(error)
            } catch let error as PortalError {
                result = .failure(QMPError("\(request.command): \(error)"))
                conversationOver = true
            } catch {
                result = .failure(QMPError("\(request.command): \(error)"))
            }
            if request.finish() { deliver(request, result) }
            if conversationOver {
                if waitingCount > 0 {
                    do {
                        try engine.queueInterrupt(Self.interruptName)
                    } catch {
                        engine.logger.error("\(error)")
                    }
                }
                return
            }
        }
    }
}
