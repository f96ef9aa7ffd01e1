import CNats
import Synchronization

extension Duration {
    /// Whole milliseconds, as cnats takes timeouts.
    var cnatsMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

/// The payload of a cnats message, copied into Swift memory.
func payloadBytes(of message: OpaquePointer) -> [UInt8] {
    let length = Int(natsMsg_GetDataLength(message))
    guard length > 0, let data = natsMsg_GetData(message) else { return [] }
    return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
}

/// The text of a cnats status.
func statusText(_ status: natsStatus) -> String {
    String(cString: natsStatus_GetText(status))
}

/// A flag that is set once: the first caller of `setOnce()` gets true (and does the closing).
struct OnceFlag: ~Copyable, Sendable {
    private let flag = Mutex(false)

    init() {}

    func setOnce() -> Bool {
        flag.withLock { isSet in
            defer { isSet = true }
            return !isSet
        }
    }

    var isSet: Bool { flag.withLock { $0 } }
}
