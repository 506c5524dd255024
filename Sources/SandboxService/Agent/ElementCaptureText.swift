import Foundation
import InspectKit

/// An element the person picked with the Chrome extension (`application/vnd.inspect.element+json`,
/// see `clients/chrome/capture.js`), rendered compactly for the model: where it is, its box and
/// the styles that are set, the React components that render it (innermost first, with props
/// and source locations), and its DOM as indented HTML. About 1–8 KB whatever the capture's size.
enum ElementCaptureText {
  static let mediaType = "application/vnd.inspect.element+json"
  /// Characters of rendered DOM, at most.
  static let domLimit = 6000
  /// Characters of one component's props, at most.
  static let propsLimit = 300
  /// Components listed, at most.
  static let componentLimit = 12
  /// Styles left out because they say nothing (initial or empty values).
  static let quietValues: Set<String> = [
    "", "none", "normal", "auto", "0px", "static", "visible", "0", "1", "content-box",
  ]

  static func render(_ data: Data, name: String) -> String {
    guard let capture = try? JSONValue.decode(data), capture.objectValue != nil else {
      return "[attachment \(name): an element capture that could not be read]"
    }
    var lines: [String] = []
    let url = capture["url"]?.stringValue ?? "?"
    let title = capture["title"]?.stringValue ?? ""
    var header = "[element picked on \(url)"
    if !title.isEmpty { header += " (\"\(title)\")" }
    if let viewport = capture["viewport"], let width = number(viewport["width"]),
      let height = number(viewport["height"])
    {
      header += ", viewport \(width)×\(height)"
    }
    lines.append(header + "]")
    var place = "selector: \(capture["selector"]?.stringValue ?? "?")"
    if let rect = capture["rect"], let x = number(rect["x"]), let y = number(rect["y"]),
      let width = number(rect["width"]),
      let height = number(rect["height"])
    {
      place += " · box \(x),\(y) \(width)×\(height)"
    }
    lines.append(place)
    if let styles = capture["styles"]?.objectValue {
      let set = styles.sorted { $0.key < $1.key }.compactMap { key, value -> String? in
        guard let text = value.stringValue, !quietValues.contains(text) else { return nil }
        return "\(key): \(text)"
      }
      if !set.isEmpty { lines.append("styles: " + set.joined(separator: "; ")) }
    }
    if let components = capture["react"]?["components"]?.arrayValue, !components.isEmpty {
      lines.append("React components, innermost first:")
      for component in components.prefix(componentLimit) {
        var line = "- \(component["name"]?.stringValue ?? "?")"
        if let props = component["props"], props.objectValue?.isEmpty == false {
          line += " " + cut(json(props), propsLimit)
        }
        if let source = component["source"], let file = source["fileName"]?.stringValue {
          line += " at \(file)"
          if let lineNumber = number(source["lineNumber"]), lineNumber > 0 { line += ":\(lineNumber)" }
          if let column = number(source["columnNumber"]), column > 0 { line += ":\(column)" }
        }
        lines.append(line)
      }
      let omitted =
        components.count - min(components.count, componentLimit) + (number(capture["react"]?["omitted"]) ?? 0)
      if omitted > 0 { lines.append("- … \(omitted) more up to the root") }
    }
    if let dom = capture["dom"] {
      var html = ""
      self.html(dom, depth: 0, into: &html)
      var note = ""
      if let omitted = number(capture["truncated"]?["domNodesOmitted"]), omitted > 0 {
        note = " (\(omitted) elements left out by the extension's cap)"
      }
      if html.count > domLimit {
        html = String(html.prefix(domLimit)) + "\n…"
        note += " (cut at \(domLimit) characters)"
      }
      lines.append("DOM\(note):")
      lines.append(html)
    }
    return lines.joined(separator: "\n")
  }

  /// The DOM entry (`{tag, attributes, children}`, text children as strings) as indented HTML.
  private static func html(_ node: JSONValue, depth: Int, into output: inout String) {
    let indent = String(repeating: "  ", count: depth)
    if let text = node.stringValue {
      output += indent + escape(text) + "\n"
      return
    }
    let tag = node["tag"]?.stringValue ?? "?"
    var open = "<\(tag)"
    for (name, value) in (node["attributes"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
      open += " \(name)=\"\(escape(value.stringValue ?? ""))\""
    }
    open += ">"
    let children = node["children"]?.arrayValue ?? []
    if children.isEmpty {
      output += indent + open + "</\(tag)>\n"
    } else if children.count == 1, let text = children[0].stringValue, text.count <= 80 {
      output += indent + open + escape(text) + "</\(tag)>\n"
    } else {
      output += indent + open + "\n"
      for child in children { html(child, depth: depth + 1, into: &output) }
      output += indent + "</\(tag)>\n"
    }
  }

  private static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: "\"", with: "&quot;")
  }

  private static func number(_ value: JSONValue?) -> Int? {
    switch value {
    case .integer(let number)?: Int(number)
    case .number(let number)?: Int(number.rounded())
    default: nil
    }
  }

  private static func json(_ value: JSONValue) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
  }

  private static func cut(_ text: String, _ limit: Int) -> String {
    text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
  }
}
