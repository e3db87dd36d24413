import Foundation
import Shards
import Support

/// An 8-bit RGB colour.
struct RGB: Equatable, Sendable {
    var r: UInt8, g: UInt8, b: UInt8
    init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    init(hex: UInt32) { self.init(UInt8(hex >> 16 & 255), UInt8(hex >> 8 & 255), UInt8(hex & 255)) }

    static let white = RGB(255, 255, 255), black = RGB(0, 0, 0)
    static let gray = RGB(128, 128, 128), lightGray = RGB(225, 225, 225)

    /// Relative luminance (sRGB coefficients on the encoded values; enough to pick a text colour).
    var luminance: Double { (0.2126 * Double(r) + 0.7152 * Double(g) + 0.0722 * Double(b)) / 255 }
    /// Black or white, whichever reads better on this colour.
    var contrastingText: RGB { luminance > 0.45 ? .black : .white }
}

/// Perceptually uniform colour maps.
enum Colormap {
    /// matplotlib's viridis at 11 evenly spaced points (dark purple → yellow).
    static let viridisStops: [UInt32] = [0x440154, 0x482576, 0x414487, 0x35608D, 0x2A788E, 0x21908C,
                                         0x22A884, 0x43BF71, 0x7AD151, 0xBBDF27, 0xFDE725]

    /// viridis at `t` in [0, 1] (clamped), linearly interpolated between the stops.
    static func viridis(_ t: Double) -> RGB {
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(viridisStops.count - 1)
        let i = min(Int(x), viridisStops.count - 2), f = x - Double(i)
        let a = RGB(hex: viridisStops[i]), b = RGB(hex: viridisStops[i + 1])
        func mix(_ u: UInt8, _ v: UInt8) -> UInt8 { UInt8((Double(u) * (1 - f) + Double(v) * f).rounded()) }
        return RGB(mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b))
    }
}

/// A small RGB raster for plots: rectangles, lines and bitmap-font text, encoded with libpng.
struct Canvas {
    let width: Int, height: Int
    private(set) var pixels: [UInt8]

    init(width: Int, height: Int, background: RGB = .white) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    mutating func set(_ x: Int, _ y: Int, _ c: RGB) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.r; pixels[i + 1] = c.g; pixels[i + 2] = c.b
    }

    func color(_ x: Int, _ y: Int) -> RGB {
        let i = (y * width + x) * 3
        return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: RGB) {
        for yy in max(0, y)..<min(height, y + h) where w > 0 {
            for xx in max(0, x)..<min(width, x + w) { set(xx, yy, c) }
        }
    }

    mutating func rectangle(x: Int, y: Int, width w: Int, height h: Int, _ c: RGB) {
        fill(x: x, y: y, width: w, height: 1, c); fill(x: x, y: y + h - 1, width: w, height: 1, c)
        fill(x: x, y: y, width: 1, height: h, c); fill(x: x + w - 1, y: y, width: 1, height: h, c)
    }

    /// A straight line `thickness` pixels wide (Bresenham with a square brush).
    mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: RGB, thickness: Int = 1) {
        var x = x0, y = y0
        let dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        let lo = -(thickness - 1) / 2
        while true {
            fill(x: x + lo, y: y + lo, width: thickness, height: thickness, c)
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    enum Align { case left, center, right }

    /// Draws `text` with the 5×7 font, `scale` pixels per font pixel. Horizontal text: (x, y) is
    /// the top edge, at the left, centre or right end per `align`. Vertical text (reading bottom
    /// to top): (x, y) is the left edge, at the bottom, centre or top end per `align`.
    mutating func text(_ text: String, x: Int, y: Int, _ c: RGB, scale: Int = 1, align: Align = .left, vertical: Bool = false) {
        let w = BitmapFont.width(text, scale: scale)
        let start: Int
        switch (align, vertical) {
        case (.left, false): start = x
        case (.center, false): start = x - w / 2
        case (.right, false): start = x - w
        case (.left, true): start = y
        case (.center, true): start = y + w / 2
        case (.right, true): start = y + w
        }
        for (i, ch) in text.enumerated() {
            for gy in 0..<BitmapFont.glyphHeight {
                for gx in 0..<BitmapFont.glyphWidth where BitmapFont.pixel(ch, x: gx, y: gy) {
                    let along = i * BitmapFont.advance * scale + gx * scale
                    if vertical {
                        fill(x: x + gy * scale, y: start - along - scale + 1, width: scale, height: scale, c)
                    } else {
                        fill(x: start + along, y: y + gy * scale, width: scale, height: scale, c)
                    }
                }
            }
        }
    }

    var image: Image { Image(width: width, height: height, channels: 3, pixels: pixels) }

    /// Writes the canvas as a PNG (atomically).
    func writePNG(to path: String) throws {
        try AtomicFile.write(Data(try PNGCodec.encode(image)), to: path)
    }
}
