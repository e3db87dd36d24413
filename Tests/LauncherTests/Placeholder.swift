import Testing
@Test func placeholder_LauncherTests() { #expect(Bool(true)) }
