public enum ShardsPlaceholder {}
