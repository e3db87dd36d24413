import Testing
/// Tests that start a `FaultServer` live under this suite, which runs them one at a time.
@Suite(.serialized) struct ServerTests {}
