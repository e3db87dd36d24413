import Testing
@Test func placeholder_ShardsTests() { #expect(Bool(true)) }
