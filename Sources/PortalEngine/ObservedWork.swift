/// Work that watches a hypercall without serving it: an observer runs
/// first in every conversation the number starts, then the next observer,
/// then the work attached to the number, all in that one conversation
/// (PortalEngine.observe). The control socket's `watch-syscall` is one: it
/// announces syscall events while an analysis module's work on the same
/// number still runs, and still decides the hypercall's result.
///
/// An observer's result is dropped; one that fails is logged (warn, rated)
/// and the next stage runs all the same, so an observer cannot take the
/// attached work's conversation from it. With no work attached, the
/// conversation ends with 0 once the observers are done.
final class ObservedWork: ConversationWork {
    /// The observers by name, in the order they were added.
    private let observers: [(name: String, factory: WorkFactory)]
    private let attached: WorkFactory?
    /// The hypercall the stages' works are made for, each when it starts.
    private let call: Hypercall
    /// The stage running: an index into `observers`, or `observers.count`
    /// for the attached work.
    private var stage = 0
    private var current: any ConversationWork

    init(call: Hypercall, observers: [(name: String, factory: WorkFactory)], attached: WorkFactory?) {
        self.call = call
        self.observers = observers
        self.attached = attached
        current = observers[0].factory.make(call)
    }

    func start(_ conversation: Conversation) -> WorkStep {
        settle(current.start(conversation), conversation)
    }

    func resume(_ conversation: Conversation, with response: PortalResponse) -> WorkStep {
        settle(current.resume(conversation, with: response), conversation)
    }

    func cancel(_ conversation: Conversation, because reason: PortalError) {
        current.cancel(conversation, because: reason)
    }

    /// Passes a command on; when an observer is done (or failed), starts
    /// the next stage in the same trap.
    private func settle(_ step: consuming WorkStep, _ conversation: Conversation) -> WorkStep {
        var step = step
        while stage < observers.count {
            switch consume step {
            case .command(let command):
                return .command(command)
            case .finished:
                break
            case .failed(let error):
                let name = observers[stage].name
                conversation.context.guestLog(.warn, "observer failed", conversation.call.number,
                                              "\(conversation.site): observer '\(name)' failed: \(error); the conversation goes on")
            }
            stage += 1
            if stage < observers.count {
                current = observers[stage].factory.make(call)
            } else if let attached {
                current = attached.make(call)
            } else {
                return .finished(0)
            }
            step = current.start(conversation)
        }
        return step
    }
}
