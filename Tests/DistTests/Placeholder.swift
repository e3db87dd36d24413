import Testing
@Test func placeholder_DistTests() { #expect(Bool(true)) }
