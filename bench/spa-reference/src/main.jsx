// The minimal SPA a team would start from: Mantine + Medplum's ResourceForm for a new
// DiagnosticReport. The FHIR schema is fetched at run time from the same origin (as a Medplum
// app fetches it from its server); the client never reaches any other host.
import '@mantine/core/styles.css';
import '@medplum/react/styles.css';

import { MantineProvider, Title } from '@mantine/core';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, MedplumClient } from '@medplum/core';
import { MedplumProvider, ResourceForm } from '@medplum/react';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

const medplum = new MedplumClient({
  baseUrl: window.location.origin + '/',
  // Nothing leaves the page: every API call answers an empty bundle.
  fetch: async () =>
    new Response(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', entry: [] }), {
      headers: { 'content-type': 'application/fhir+json' },
    }),
});

async function start() {
  const schema = await (await fetch('/schema.json')).json();
  indexStructureDefinitionBundle(schema.types);
  indexStructureDefinitionBundle(schema.resources);
  indexSearchParameterBundle(schema.searchParameters);
  createRoot(document.getElementById('root')).render(
    <StrictMode>
      <MantineProvider>
        <MedplumProvider medplum={medplum}>
          <main style={{ maxWidth: 960, margin: '0 auto', padding: 16 }}>
            <Title order={1}>New report</Title>
            <ResourceForm
              defaultValue={{ resourceType: 'DiagnosticReport', status: 'preliminary' }}
              onSubmit={(resource) => console.log(resource)}
            />
          </main>
        </MedplumProvider>
      </MantineProvider>
    </StrictMode>
  );
}

start();
