import Synchronization

/// One PORTAL_INTERRUPT conversation: the install budget its handlers share.
package final class InterruptWindow: @unchecked Sendable {
    /// Installs the window's handlers may still make.
    package private(set) var installBudget: Int

    init(installBudget: Int) { self.installBudget = installBudget }

    /// Takes up to `wanted` installs; returns how many were granted.
    package func take(_ wanted: Int) -> Int {
        let granted = min(max(wanted, 0), installBudget)
        installBudget -= granted
        return granted
    }
}

/// What queueing an interrupt did.
enum QueueResult: Sendable, Equatable {
    case queued
    /// Already pending: it runs once in the next window.
    case alreadyPending
    case noHandler
    /// `max_interrupts` names are pending already.
    case full
}

/// Named interrupt handlers and the queue of those waiting for the guest's
/// next PORTAL_INTERRUPT conversation, in the order they were queued.
final class InterruptQueue: Sendable {
    private let state = Lock(InterruptQueueState())
    /// Lets every trap ask "is anything pending?" without taking the lock.
    private let pendingCount = Atomic<Int>(0)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    var hasPending: Bool { pendingCount.load(ordering: .relaxed) > 0 }

    /// Later registration of a name wins.
    func register(_ name: String, _ factory: WorkFactory) {
        state.withLock { $0.handlers[name] = factory }
    }

    func unregister(_ name: String) {
        state.withLock { $0.handlers[name] = nil }
    }

    func queue(_ name: String) -> QueueResult {
        state.withLock { state in
            guard state.handlers[name] != nil else { return .noHandler }
            if state.pending.contains(name) { return .alreadyPending }
            guard state.pending.count < limit else { return .full }
            state.pending.append(name)
            pendingCount.store(state.pending.count, ordering: .relaxed)
            return .queued
        }
    }

    /// Takes every pending name with its handler, in queue order, and
    /// empties the queue. A name whose handler was unregistered since is
    /// returned with a nil factory so the caller can report it.
    func takePending() -> [(name: String, factory: WorkFactory?)] {
        state.withLock { state in
            let taken = state.pending.map { ($0, state.handlers[$0]) }
            state.pending.removeAll(keepingCapacity: true)
            pendingCount.store(0, ordering: .relaxed)
            return taken
        }
    }

    var pendingNames: [String] { state.withLock { $0.pending } }

    func removeAll() {
        state.withLock { $0 = InterruptQueueState() }
        pendingCount.store(0, ordering: .relaxed)
    }
}

private struct InterruptQueueState {
    var handlers: [String: WorkFactory] = [:]
    var pending: [String] = []
}

/// The work of a PORTAL_INTERRUPT conversation: every pending handler in
/// queue order, one after the other, in the same conversation. A handler that
/// fails is reported and the next one runs. When the conversation is cut
/// short, the handler it was running is reported and not run again (running
/// it again could fail the same way in every window and never let the guest
/// go), and the handlers it never reached are queued again, not lost.
final class InterruptWindowWork: ConversationWork, @unchecked Sendable {
    private let handlers: [(name: String, factory: WorkFactory?)]
    private var next = 0
    private var current: (name: String, work: any ConversationWork)?

    init(handlers: [(name: String, factory: WorkFactory?)]) { self.handlers = handlers }

    func start(_ conversation: Conversation) -> WorkStep { advance(conversation) }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        guard let (name, work) = current else { return .failed(PortalError.conversationEnded) }
        return settle(conversation, name: name, step: work.resume(conversation, with: response))
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {
        let context = conversation.context
        if let (name, work) = current {
            work.cancel(conversation, because: reason)
            current = nil
            context.guestLog(.error, "interrupt cut short", .portalInterrupt,
                            "\(conversation.site): interrupt '\(name)' was cut short: \(reason)")
        }
        while next < handlers.count {
            let name = handlers[next].name
            next += 1
            context.guestLog(.warn, "interrupt queued again", .portalInterrupt,
                            "\(conversation.site): interrupt '\(name)' did not run; queued again")
            do {
                try context.queueInterrupt(name)
            } catch {
                context.logger.error("\(error)")
            }
        }
    }

    /// Starts handlers until one sends a command, or all are done.
    private func advance(_ conversation: Conversation) -> WorkStep {
        while next < handlers.count {
            let (name, factory) = handlers[next]
            next += 1
            guard let factory else {
                conversation.context.logger.warn(
                    "\(conversation.site): interrupt '\(name)' was pending but its handler is gone; skipped")
                continue
            }
            conversation.context.logger.debug("\(conversation.site): running interrupt '\(name)'")
            let work = factory.make(conversation.call)
            switch work.start(conversation) {
            case .command(let command):
                current = (name, work)
                return .command(command)
            case .finished:
                continue
            case .failed(let error):
                reportFailure(conversation, name: name, error)
            }
        }
        return .finished(0)
    }

    /// A handler's step: commands go to the guest; an end moves on to the next handler.
    private func settle(_ conversation: Conversation, name: String, step: consuming WorkStep) -> WorkStep {
        switch consume step {
        case .command(let command):
            return .command(command)
        case .finished:
            current = nil
            return advance(conversation)
        case .failed(let error):
            current = nil
            reportFailure(conversation, name: name, error)
            return advance(conversation)
        }
    }

    private func reportFailure(_ conversation: Conversation, name: String, _ error: any Error) {
        conversation.context.guestLog(.error, "interrupt failed", .portalInterrupt,
                                     "\(conversation.site): interrupt '\(name)' failed: \(error)")
    }
}
