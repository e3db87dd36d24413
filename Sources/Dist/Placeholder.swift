public enum DistPlaceholder {}
