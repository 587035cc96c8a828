import Synchronization

/// Work attached to hypercall numbers. Read on every trap and changed
/// rarely, so readers take an immutable snapshot without locking; every
/// snapshot ever published stays alive with the registry, so a reader never
/// sees one freed under it.
final class HandlerRegistry: Sendable {
    private final class Table: Sendable {
        let numbers: [UInt32]
        let factories: [WorkFactory]

        init(numbers: [UInt32], factories: [WorkFactory]) {
            self.numbers = numbers
            self.factories = factories
        }
    }

    private let current: Atomic<Unmanaged<Table>>
    private let published: Lock<[Table]>

    init() {
        let empty = Table(numbers: [], factories: [])
        current = Atomic(Unmanaged.passUnretained(empty))
        published = Lock([empty])
    }

    /// Whether work is attached to `number`, without copying its factory.
    func contains(_ number: UInt32) -> Bool {
        current.load(ordering: .acquiring)._withUnsafeGuaranteedRef { $0.numbers.contains(number) }
    }

    func lookup(_ number: UInt32) -> WorkFactory? {
        current.load(ordering: .acquiring)._withUnsafeGuaranteedRef { table in
            for index in table.numbers.indices where table.numbers[index] == number {
                return table.factories[index]
            }
            return nil
        }
    }

    func set(_ number: UInt32, _ factory: WorkFactory) {
        _ = publish { numbers, factories in
            if let index = numbers.firstIndex(of: number) {
                factories[index] = factory
            } else {
                numbers.append(number)
                factories.append(factory)
            }
            return true
        }
    }

    func remove(_ number: UInt32) -> Bool {
        return publish { numbers, factories in
            guard let index = numbers.firstIndex(of: number) else { return false }
            numbers.remove(at: index)
            factories.remove(at: index)
            return true
        }
    }

    private func publish(_ change: (inout [UInt32], inout [WorkFactory]) -> Bool) -> Bool {
        published.withLock { tables in
            let old = tables.last!
            var numbers = old.numbers
            var factories = old.factories
            guard change(&numbers, &factories) else { return false }
            let table = Table(numbers: numbers, factories: factories)
            tables.append(table)
            current.store(Unmanaged.passUnretained(table), ordering: .releasing)
            return true
        }
    }
}
