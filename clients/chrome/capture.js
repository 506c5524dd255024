// What the Inspect extension captures of the element a person picked: the DOM subtree (capped),
// the computed styles that matter for layout, the element's box, the page and viewport, and —
// on React apps — the component stack with names, serialisable props and source locations.
//
// Pure functions on a DOM element, with no extension API, so that tests can load this file into
// any page. In the extension it runs twice: in the content script's isolated world (the DOM,
// the styles) and in the page's main world (React's fibres are expando properties of DOM nodes,
// visible only there).
(function (root) {
  "use strict";
  if (root.__inspectCapture) return;

  const LIMITS = {
    domNodes: 200, // elements in the subtree, at most
    depth: 12, // levels below the picked element
    text: 200, // characters of one text node
    attribute: 200, // characters of one attribute value
    components: 25, // components up the stack
    propsBytes: 4096, // JSON of one component's props
    textTotal: 20000, // characters of text in the whole subtree
    valueDepth: 4, // nesting inside one prop value
    arrayItems: 20, // items of one array
    objectKeys: 30, // keys of one object
    totalBytes: 65536, // the whole capture's JSON
  };

  // Styles that decide layout and look, read with getComputedStyle.
  const STYLES = [
    "display", "position", "box-sizing", "width", "height", "min-width", "max-width", "margin", "padding",
    "border", "border-radius", "top", "right", "bottom", "left", "z-index", "overflow", "flex-direction",
    "flex-wrap", "justify-content", "align-items", "gap", "grid-template-columns", "grid-template-rows",
    "font-family", "font-size", "font-weight", "line-height", "text-align", "color", "background-color",
    "opacity", "visibility",
  ];

  // Props, object keys and attributes whose names say they hold secrets are not sent.
  const SENSITIVE = /pass(word|wd)?|secret|token|auth|cookie|session|api.?key|credential|private/i;

  function cut(text, limit) {
    return text.length <= limit ? { text, cut: false } : { text: text.slice(0, limit) + "…", cut: true };
  }

  // A CSS selector that finds the element again: ids where they are unique, else tag and
  // :nth-of-type steps from the nearest such ancestor.
  function selector(element) {
    const steps = [];
    let node = element;
    while (node && node.nodeType === 1 && steps.length < 12) {
      if (node.id && node.ownerDocument.querySelectorAll("#" + CSS.escape(node.id)).length === 1) {
        steps.unshift("#" + CSS.escape(node.id));
        break;
      }
      let step = node.localName;
      const parent = node.parentElement;
      if (parent) {
        const same = Array.from(parent.children).filter((child) => child.localName === node.localName);
        if (same.length > 1) step += `:nth-of-type(${same.indexOf(node) + 1})`;
      }
      steps.unshift(step);
      node = parent;
    }
    return steps.join(" > ");
  }

  // The subtree: elements with their attributes and text, breadth-limited by `LIMITS.domNodes`
  // (counted in document order) and `LIMITS.depth`. What was left out is counted.
  function domTree(element, limits) {
    const state = { nodes: 0, omitted: 0, textOmitted: 0, text: 0, cut: false };
    function visit(node, depth) {
      if (state.nodes >= limits.domNodes) {
        state.omitted += 1 + node.querySelectorAll("*").length;
        return null;
      }
      state.nodes += 1;
      const entry = { tag: node.localName };
      const attributes = {};
      const secretValue = node.localName === "input" && ["password", "hidden"].includes((node.type || "").toLowerCase());
      for (const attribute of Array.from(node.attributes)) {
        if (attribute.name.startsWith("data-inspect-")) continue;
        if (SENSITIVE.test(attribute.name) || (secretValue && attribute.name === "value")) {
          attributes[attribute.name] = "[redacted]";
          continue;
        }
        const value = cut(attribute.value, limits.attribute);
        if (value.cut) state.cut = true;
        attributes[attribute.name] = value.text;
      }
      if (Object.keys(attributes).length) entry.attributes = attributes;
      const children = [];
      for (const child of Array.from(node.childNodes)) {
        if (child.nodeType === 3) {
          const text = child.textContent.replace(/\s+/g, " ").trim();
          if (!text) continue;
          // Past the element cap or the text budget, text is counted, not kept.
          if (state.nodes >= limits.domNodes || state.text >= limits.textTotal) {
            state.textOmitted += 1;
            continue;
          }
          const value = cut(text, Math.min(limits.text, limits.textTotal - state.text));
          if (value.cut) state.cut = true;
          state.text += value.text.length;
          children.push(value.text);
        } else if (child.nodeType === 1 && !["script", "style", "noscript"].includes(child.localName)) {
          if (depth >= limits.depth) {
            state.omitted += 1 + child.querySelectorAll("*").length;
            continue;
          }
          const visited = visit(child, depth + 1);
          if (visited) children.push(visited);
        }
      }
      if (children.length) entry.children = children;
      return entry;
    }
    const tree = visit(element, 0);
    return { tree, nodes: state.nodes, omitted: state.omitted, textOmitted: state.textOmitted, textCut: state.cut };
  }

  function styles(element) {
    const computed = element.ownerDocument.defaultView.getComputedStyle(element);
    const picked = {};
    for (const name of STYLES) {
      const value = computed.getPropertyValue(name);
      if (value !== "") picked[name] = value;
    }
    return picked;
  }

  // A value as JSON-safe data: functions, elements and symbols named, not serialised; cycles
  // and depth cut; long strings, arrays and objects capped.
  function serialise(value, limits, depth = 0, seen = new Set()) {
    if (value === null || typeof value === "boolean") return value;
    if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
    if (typeof value === "string") return cut(value, limits.attribute).text;
    if (typeof value === "undefined") return "[undefined]";
    if (typeof value === "bigint") return value.toString() + "n";
    if (typeof value === "symbol") return "[symbol]";
    if (typeof value === "function") return `[function ${value.displayName || value.name || "anonymous"}]`;
    if (typeof value !== "object") return `[${typeof value}]`;
    if (typeof Node !== "undefined" && value instanceof Node) return `[element ${value.nodeName.toLowerCase()}]`;
    if (value.$$typeof) return `[React element ${componentName(value.type) || "?"}]`;
    if (seen.has(value)) return "[cycle]";
    if (depth >= limits.valueDepth) return Array.isArray(value) ? "[array]" : "[object]";
    seen.add(value);
    let result;
    if (Array.isArray(value)) {
      result = value.slice(0, limits.arrayItems).map((item) => serialise(item, limits, depth + 1, seen));
      if (value.length > limits.arrayItems) result.push(`[${value.length - limits.arrayItems} more]`);
    } else if (value instanceof Date) {
      result = isNaN(value) ? "[invalid date]" : value.toISOString();
    } else {
      result = {};
      const keys = Object.keys(value);
      for (const key of keys.slice(0, limits.objectKeys)) {
        result[key] = SENSITIVE.test(key) ? "[redacted]" : serialise(value[key], limits, depth + 1, seen);
      }
      if (keys.length > limits.objectKeys) result["…"] = `${keys.length - limits.objectKeys} more keys`;
    }
    seen.delete(value);
    return result;
  }

  function componentName(type) {
    if (!type) return null;
    if (typeof type === "string") return null; // a host element (div, button)
    if (typeof type === "function") return type.displayName || type.name || "Anonymous";
    if (typeof type === "object") {
      if (type.displayName) return type.displayName;
      // forwardRef and memo wrap the component.
      if (type.render) return componentName(type.render);
      if (type.type) return componentName(type.type);
    }
    return null;
  }

  // The React fibre behind a DOM node: React 17+ sets `__reactFiber$<random>`, React 16
  // `__reactInternalInstance$<random>`.
  function fibreOf(element) {
    for (const key of Object.keys(element)) {
      if (key.startsWith("__reactFiber$") || key.startsWith("__reactInternalInstance$")) return element[key];
    }
    return null;
  }

  // The components from the picked element up to the root: name, props (without children,
  // serialised and capped) and source location where React exposes it (`_debugSource`,
  // development builds compiled with JSX source information).
  function reactComponents(element, limits = LIMITS) {
    let node = element;
    let fibre = null;
    while (node && !fibre) {
      fibre = fibreOf(node);
      node = node.parentElement;
    }
    if (!fibre) return null;
    const components = [];
    let omitted = 0;
    for (let current = fibre; current; current = current.return) {
      const name = componentName(current.type);
      if (!name) continue;
      if (components.length >= limits.components) {
        omitted += 1;
        continue;
      }
      const props = {};
      for (const [key, value] of Object.entries(current.memoizedProps || {})) {
        if (key === "children") continue;
        props[key] = SENSITIVE.test(key) ? "[redacted]" : serialise(value, limits);
      }
      const entry = { name, props };
      let json = JSON.stringify(props);
      if (json.length > limits.propsBytes) {
        const kept = {};
        for (const key of Object.keys(props)) {
          kept[key] = props[key];
          if (JSON.stringify(kept).length > limits.propsBytes) {
            delete kept[key];
            break;
          }
        }
        entry.props = kept;
        entry.propsTruncated = true;
      }
      const source = current._debugSource;
      if (source && source.fileName) {
        entry.source = { fileName: String(source.fileName), lineNumber: source.lineNumber || 0 };
        if (source.columnNumber) entry.source.columnNumber = source.columnNumber;
      }
      components.push(entry);
    }
    return { components, omitted };
  }

  // Everything but React: what the isolated world can see.
  function captureElement(element, limits = LIMITS) {
    const view = element.ownerDocument.defaultView;
    const box = element.getBoundingClientRect();
    const dom = domTree(element, limits);
    return {
      version: 1,
      url: cut(view.location.href, 2000).text,
      title: cut(element.ownerDocument.title, limits.attribute).text,
      viewport: { width: view.innerWidth, height: view.innerHeight, devicePixelRatio: view.devicePixelRatio },
      selector: cut(selector(element), 1000).text,
      rect: { x: Math.round(box.x), y: Math.round(box.y), width: Math.round(box.width), height: Math.round(box.height) },
      styles: styles(element),
      dom: dom.tree,
      limits: { domNodes: limits.domNodes, depth: limits.depth, totalBytes: limits.totalBytes },
      truncated: { domNodesOmitted: dom.omitted, textNodesOmitted: dom.textOmitted, textCut: dom.textCut },
      react: null,
    };
  }

  // Keeps the whole capture under `limits.totalBytes` of JSON: drops the deepest DOM levels,
  // then components from the top of the stack, and says so.
  function fit(capture, limits = LIMITS) {
    let json = JSON.stringify(capture);
    if (json.length <= limits.totalBytes) return capture;
    const copy = JSON.parse(json);
    const prune = (node, depth, keep) => {
      if (!node || typeof node !== "object" || !node.children) return 0;
      let dropped = 0;
      if (depth >= keep) {
        dropped = node.children.filter((child) => typeof child === "object").length;
        node.children = node.children.filter((child) => typeof child !== "object");
        return dropped;
      }
      for (const child of node.children) dropped += prune(child, depth + 1, keep);
      return dropped;
    };
    for (let keep = limits.depth; keep >= 0 && JSON.stringify(copy).length > limits.totalBytes; keep -= 1) {
      copy.truncated.domNodesOmitted += prune(copy.dom, 0, keep);
      copy.truncated.domDepthKept = keep;
    }
    while (copy.react && copy.react.components.length > 1 && JSON.stringify(copy).length > limits.totalBytes) {
      copy.react.components.pop();
      copy.react.omitted += 1;
    }
    // Last resorts: shorter texts and attributes, then only the element itself, then no props.
    const shorten = (node) => {
      if (!node || typeof node !== "object") return;
      for (const name of Object.keys(node.attributes || {})) node.attributes[name] = cut(node.attributes[name], 40).text;
      node.children = (node.children || []).map((child) => (typeof child === "string" ? cut(child, 40).text : child));
      node.children.forEach(shorten);
    };
    if (JSON.stringify(copy).length > limits.totalBytes) {
      shorten(copy.dom);
      copy.truncated.textCut = true;
    }
    if (JSON.stringify(copy).length > limits.totalBytes && copy.dom) {
      copy.truncated.domNodesOmitted += (copy.dom.children || []).filter((child) => typeof child === "object").length;
      delete copy.dom.children;
    }
    if (JSON.stringify(copy).length > limits.totalBytes && copy.react) {
      for (const component of copy.react.components) {
        component.props = {};
        component.propsTruncated = true;
      }
    }
    copy.truncated.overTotal = JSON.stringify(copy).length > limits.totalBytes;
    return copy;
  }

  root.__inspectCapture = { LIMITS, captureElement, reactComponents, serialise, selector, fit, componentName };
})(globalThis);
