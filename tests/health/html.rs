//! Reading figures out of the status page, for the tests.
#![allow(dead_code)]

/// The text inside the element with this id (inner tags dropped).
pub fn figure(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element {id}"));
    let open_end = start + html[start..].find('>').unwrap() + 1;
    let mut depth = 0;
    let mut text = String::new();
    let mut rest = &html[open_end..];
    loop {
        let lt = rest.find('<').unwrap();
        text.push_str(&rest[..lt]);
        let gt = lt + rest[lt..].find('>').unwrap();
        let tag = &rest[lt + 1..gt];
        if tag.starts_with('/') {
            if depth == 0 {
                return text;
            }
            depth -= 1;
        } else if !tag.ends_with('/') {
            depth += 1;
        }
        rest = &rest[gt + 1..];
    }
}

/// The `d` of every area path in the graph with this id.
pub fn areas(html: &str, id: &str) -> Vec<String> {
    let start = html.find(&format!("id=\"{id}\"")).unwrap();
    let end = start + html[start..].find("</figure>").unwrap();
    html[start..end]
        .split("<path class=\"area\" d=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap().to_string())
        .collect()
}
