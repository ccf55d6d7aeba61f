//! Valid queries: canonical printing and `parse(print(ast)) == ast`.

use topotap_grammar::ast::{Keyword, Param, Predicate, StepKind};
use topotap_grammar::parse;

/// (query, canonical printing)
#[rustfmt::skip]
const VALID: &[(&str, &str)] = &[
    // bare graph and every core step
    ("G", "G"),
    ("G.V()", "G.V()"),
    ("G.V('node-1')", "G.V('node-1')"),
    ("G.E()", "G.E()"),
    ("G.E('edge-1')", "G.E('edge-1')"),
    ("G.V().Has('Name', 'eth0')", "G.V().Has('Name', 'eth0')"),
    ("G.V().Has('Name')", "G.V().Has('Name')"),
    ("G.V().Has('Name', 'eth0', 'MTU', 1500)", "G.V().Has('Name', 'eth0', 'MTU', 1500)"),
    ("G.V().HasKey('IPV4')", "G.V().HasKey('IPV4')"),
    ("G.V().HasNot('IPV4')", "G.V().HasNot('IPV4')"),
    ("G.V().HasEither('Type', 'veth', 'Type', 'tun')", "G.V().HasEither('Type', 'veth', 'Type', 'tun')"),
    ("G.V().HasEither('Type')", "G.V().HasEither('Type')"),
    ("G.V().Out()", "G.V().Out()"),
    ("G.V().Out('Type', 'netns')", "G.V().Out('Type', 'netns')"),
    ("G.V().In()", "G.V().In()"),
    ("G.V().Both('Name', 'br0')", "G.V().Both('Name', 'br0')"),
    ("G.V().OutE()", "G.V().OutE()"),
    ("G.V().InE('RelationType', 'ownership')", "G.V().InE('RelationType', 'ownership')"),
    ("G.V().BothE()", "G.V().BothE()"),
    ("G.E().OutV()", "G.E().OutV()"),
    ("G.E().InV('Type', 'host')", "G.E().InV('Type', 'host')"),
    ("G.E().BothV()", "G.E().BothV()"),
    ("G.V().Dedup()", "G.V().Dedup()"),
    ("G.V().Dedup('Name', 'Type')", "G.V().Dedup('Name', 'Type')"),
    ("G.V().Count()", "G.V().Count()"),
    ("G.V().Range(0, 10)", "G.V().Range(0, 10)"),
    ("G.V().Limit(5)", "G.V().Limit(5)"),
    ("G.V().Sort()", "G.V().Sort()"),
    ("G.V().Sort('Name')", "G.V().Sort('Name')"),
    ("G.V().Sort(DESC, 'Name')", "G.V().Sort(DESC, 'Name')"),
    ("G.V().Sort(asc, 'Name')", "G.V().Sort(ASC, 'Name')"),
    ("G.V().Values('Name')", "G.V().Values('Name')"),
    ("G.V().ValueMap('Name', 'Type')", "G.V().ValueMap('Name', 'Type')"),
    ("G.V().Keys()", "G.V().Keys()"),
    ("G.V().Sum()", "G.V().Sum()"),
    ("G.V().Sum('MTU')", "G.V().Sum('MTU')"),
    (
        "G.V().Has('Name', 'h1').ShortestPathTo(Metadata('Name', 'eth0'))",
        "G.V().Has('Name', 'h1').ShortestPathTo(Metadata('Name', 'eth0'))",
    ),
    (
        "G.V().ShortestPathTo(Metadata('Name', 'eth0', 'Type', 'veth'), Metadata('RelationType', 'layer2'))",
        "G.V().ShortestPathTo(Metadata('Name', 'eth0', 'Type', 'veth'), Metadata('RelationType', 'layer2'))",
    ),
    ("G.V().SubGraph()", "G.V().SubGraph()"),
    ("G.V().SubGraph('RelationType', 'ownership')", "G.V().SubGraph('RelationType', 'ownership')"),
    ("G.V().As('a').Out().As('b').Select('a', 'b')", "G.V().As('a').Out().As('b').Select('a', 'b')"),
    ("G.V().G.E()", "G.V().G.E()"),
    ("G.V().G().E()", "G.V().G.E()"),
    ("G.V().g.V()", "G.V().G.V()"),
    // predicates
    ("G.V().Has('MTU', NE(1500))", "G.V().Has('MTU', NE(1500))"),
    ("G.V().Has('MTU', NEE(1500))", "G.V().Has('MTU', NEE(1500))"),
    ("G.V().Has('MTU', LT(1500))", "G.V().Has('MTU', LT(1500))"),
    ("G.V().Has('MTU', GT(1500))", "G.V().Has('MTU', GT(1500))"),
    ("G.V().Has('MTU', LTE(1500))", "G.V().Has('MTU', LTE(1500))"),
    ("G.V().Has('MTU', GTE(1500))", "G.V().Has('MTU', GTE(1500))"),
    ("G.V().Has('MTU', INSIDE(1000, 2000))", "G.V().Has('MTU', INSIDE(1000, 2000))"),
    ("G.V().Has('MTU', OUTSIDE(1000, 2000))", "G.V().Has('MTU', OUTSIDE(1000, 2000))"),
    ("G.V().Has('MTU', BETWEEN(1000, 2000))", "G.V().Has('MTU', BETWEEN(1000, 2000))"),
    ("G.V().Has('Type', WITHIN('veth', 'tun'))", "G.V().Has('Type', WITHIN('veth', 'tun'))"),
    ("G.V().Has('Type', WITHIN())", "G.V().Has('Type', WITHIN())"),
    ("G.V().Has('Type', WITHOUT('veth', 1, 2.5))", "G.V().Has('Type', WITHOUT('veth', 1, 2.5))"),
    ("G.V().Has('Name', REGEX('eth.*'))", "G.V().Has('Name', REGEX('eth.*'))"),
    ("G.V().Has('Price', REGEX('5\\\\$'))", "G.V().Has('Price', REGEX('5\\\\$'))"),
    ("G.V().Has('IPV4', IPV4RANGE('10.0.0.0/8'))", "G.V().Has('IPV4', IPV4RANGE('10.0.0.0/8'))"),
    ("G.V().Has('State', NE(true))", "G.V().Has('State', NE(true))"),
    ("G.V().Has('MTU', ne(1500))", "G.V().Has('MTU', NE(1500))"),
    ("G.V().Has('Name', Regex('eth.*'))", "G.V().Has('Name', REGEX('eth.*'))"),
    ("G.V().Has('IPV4', ipv4range('10.0.0.0/8'))", "G.V().Has('IPV4', IPV4RANGE('10.0.0.0/8'))"),
    ("G.V().Has('Type', within('a') , 'X', without('b'))", "G.V().Has('Type', WITHIN('a'), 'X', WITHOUT('b'))"),
    ("G.V().Has('Type', WITHIN(WITHIN('a'), NE(1)))", "G.V().Has('Type', WITHIN(WITHIN('a'), NE(1)))"),
    (
        "G.V().ShortestPathTo(Metadata('A', Metadata('B', 1)))",
        "G.V().ShortestPathTo(Metadata('A', Metadata('B', 1)))",
    ),
    ("G.V().ShortestPathTo(metadata())", "G.V().ShortestPathTo(Metadata())"),
    // keywords and booleans
    ("G.Context(NOW, FOREVER)", "G.Context(NOW, FOREVER)"),
    ("G.At(now)", "G.Context(NOW)"),
    ("G.V().Has('Up', true, 'Down', FALSE)", "G.V().Has('Up', true, 'Down', false)"),
    // leniency: case, whitespace, commas, quotes
    ("g.v().has('Name','x')", "G.V().Has('Name', 'x')"),
    ("g.V().HASKEY('a').hasnot('b').outE().inv()", "G.V().HasKey('a').HasNot('b').OutE().InV()"),
    ("  G . V ( ) . Has ( 'a' , 'b' )  ", "G.V().Has('a', 'b')"),
    ("G\r\n.V()\t.Out()\n", "G.V().Out()"),
    ("G.V().Has('a' 'b')", "G.V().Has('a', 'b')"),
    ("G.V().Has('a','b',)", "G.V().Has('a', 'b')"),
    ("G.V().Has(,'a',,'b',)", "G.V().Has('a', 'b')"),
    ("G.V().Has(\"Name\", \"eth0\")", "G.V().Has('Name', 'eth0')"),
    ("G.V().Has(\"it's\", 'say \"hi\"')", "G.V().Has('it\\'s', 'say \"hi\"')"),
    // escapes
    ("G.V().Has('a\\'b', \"c\\\"d\")", "G.V().Has('a\\'b', 'c\"d')"),
    ("G.V().Has('back\\\\slash', 'x')", "G.V().Has('back\\\\slash', 'x')"),
    ("G.V().Has('line\\nbreak', 'tab\\there')", "G.V().Has('line\\nbreak', 'tab\\there')"),
    ("G.V().Has('é', '日本')", "G.V().Has('é', '日本')"),
    ("G.V().Has('', '')", "G.V().Has('', '')"),
    // numbers
    ("G.V().Has('MTU', -5)", "G.V().Has('MTU', -5)"),
    ("G.V().Has('X', -1.5)", "G.V().Has('X', -1.5)"),
    ("G.V().Has('X', 1.5)", "G.V().Has('X', 1.5)"),
    ("G.V().Has('X', 2.0)", "G.V().Has('X', 2.0)"),
    ("G.V().Has('X', 1e3)", "G.V().Has('X', 1000.0)"),
    ("G.V().Has('X', 2.5E-3)", "G.V().Has('X', 0.0025)"),
    ("G.V().Has('X', 9223372036854775807)", "G.V().Has('X', 9223372036854775807)"),
    ("G.V().Has('X', -9223372036854775808)", "G.V().Has('X', -9223372036854775808)"),
    ("G.V().Has('X', 007)", "G.V().Has('X', 7)"),
    // extension steps keep their spelling and take anything
    ("G.V().Flows()", "G.V().Flows()"),
    ("G.V().flows('Network', '10.0.0.1')", "G.V().flows('Network', '10.0.0.1')"),
    ("G.Flows().Has('Network.A', '10.0.0.1').CaptureNode()", "G.Flows().Has('Network.A', '10.0.0.1').CaptureNode()"),
    ("G.V().Metrics().Aggregates(60)", "G.V().Metrics().Aggregates(60)"),
    ("G.V().Descendants('RelationType', 'ownership', 0)", "G.V().Descendants('RelationType', 'ownership', 0)"),
    ("G.Flows().RawPackets().BPF('tcp port 80')", "G.Flows().RawPackets().BPF('tcp port 80')"),
    ("G.V().My_Step2(1, 'a', NE(2), Metadata('k', ASC))", "G.V().My_Step2(1, 'a', NE(2), Metadata('k', ASC))"),
    // typical Skydive queries
    (
        "G.V().Has('Name','vm1').Out().Has('Name','eth0').Flows().Has('Network.A', '10.0.0.1').Dedup().Sort(DESC, 'Metric.ABBytes').Limit(10)",
        "G.V().Has('Name', 'vm1').Out().Has('Name', 'eth0').Flows().Has('Network.A', '10.0.0.1').Dedup().Sort(DESC, 'Metric.ABBytes').Limit(10)",
    ),
    (
        "G.V().Has('Type','veth').Out().Has('Name', REGEX('eth.*'))",
        "G.V().Has('Type', 'veth').Out().Has('Name', REGEX('eth.*'))",
    ),
];

#[test]
fn canonical_printing() {
    for (query, canonical) in VALID {
        let ast = parse(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
        assert_eq!(ast.to_string(), *canonical, "printing {query:?}");
    }
}

#[test]
fn round_trip() {
    for (query, _) in VALID {
        let ast = parse(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
        let printed = ast.to_string();
        let again = parse(&printed).unwrap_or_else(|e| panic!("reparsing {printed:?}: {e}"));
        assert_eq!(again, ast, "round trip of {query:?}");
        assert_eq!(
            again.to_string(),
            printed,
            "printing is a fixed point for {query:?}"
        );
    }
}

#[test]
fn typed_params() {
    let q = parse("G.V().Has('a', -5, 'b', 1.5, 'c', true, 'd', NE('x')).Sort(desc, 'k')").unwrap();
    assert_eq!(q.steps.len(), 3);
    assert_eq!(q.steps[1].kind, StepKind::Has);
    assert_eq!(
        q.steps[1].params,
        vec![
            Param::Str("a".into()),
            Param::Int(-5),
            Param::Str("b".into()),
            Param::Float(1.5),
            Param::Str("c".into()),
            Param::Bool(true),
            Param::Str("d".into()),
            Param::Predicate(Predicate::Ne(Box::new(Param::Str("x".into())))),
        ]
    );
    assert_eq!(q.steps[2].params[0], Param::Keyword(Keyword::Desc));
}

#[test]
fn metadata_pairs_in_order() {
    let q = parse("G.V().ShortestPathTo(Metadata('b', 1, 'a', 'x'))").unwrap();
    assert_eq!(
        q.steps[1].params,
        vec![Param::Metadata(vec![
            ("b".into(), Param::Int(1)),
            ("a".into(), Param::Str("x".into())),
        ])]
    );
}

#[test]
fn step_spans_cover_name_to_close_paren() {
    let text = "G.V().Has('Name', 'eth0') .G";
    let q = parse(text).unwrap();
    let spans: Vec<&str> = q
        .steps
        .iter()
        .map(|s| &text[s.span.start..s.span.end])
        .collect();
    assert_eq!(spans, ["V()", "Has('Name', 'eth0')", "G"]);
}

#[test]
fn step_kind_names() {
    let core = [
        "G",
        "V",
        "E",
        "Has",
        "HasKey",
        "HasNot",
        "HasEither",
        "Out",
        "In",
        "Both",
        "OutE",
        "InE",
        "BothE",
        "OutV",
        "InV",
        "BothV",
        "Dedup",
        "Count",
        "Range",
        "Limit",
        "Sort",
        "Values",
        "ValueMap",
        "Keys",
        "Sum",
        "ShortestPathTo",
        "SubGraph",
        "As",
        "Select",
    ];
    for name in core {
        let kind = StepKind::from_ident(name);
        assert!(!matches!(kind, StepKind::Extension(_)), "{name}");
        assert_eq!(kind.name(), name);
        assert_eq!(StepKind::from_ident(&name.to_lowercase()), kind);
        assert_eq!(StepKind::from_ident(&name.to_uppercase()), kind);
        assert_eq!(kind.to_string(), name);
    }
    assert_eq!(
        StepKind::from_ident("fLoWs"),
        StepKind::Extension("fLoWs".into())
    );
    assert_eq!(StepKind::from_ident("fLoWs").name(), "fLoWs");
}
